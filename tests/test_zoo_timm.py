"""timm zoo oracle tests: per-conv MACs and calls against FlopCounterMode, and no harm, on untrained timm models.

Every model runs in a process of its own (``tests/zoo_worker.py``, which says what is checked and how):
built with ``convaudit.sources.zoo`` (``timm.create_model(name, pretrained=False)`` under seed 0),
FlopCounterMode on an eval-mode real forward is the oracle for every module that runs ``aten.convolution``
(timm's ``Conv2dSame``, ``StdConv2d``, ``ScaledStdConv2d(Same)``, ``CondConv2d`` and ``MixedConv2d``'s
children included), and the model's state_dict must be bit-identical after ``analyze`` in eval mode and in
train mode. The models with a conv adapter in :data:`CONVERT` are also converted at full rank.

Sizes are the smallest each architecture accepts, H != W where it may: :data:`CNN` gives odd maps
(72→36→18→9→5→3, 104→52→26→13→7→4) so floor/ceil and height/width mistakes show; batch 2, so batch
mistakes show and train-mode BatchNorm works. ``CONVAUDIT_ZOO_JOBS`` sets how many models run at once (2).

Run with ``pytest -m zoo tests/test_zoo_timm.py`` (CI runs it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
import torch.nn as nn

import convaudit
from tests.zoo_worker import ZooRunner, compare, failures, harm, oracle, shared_runner, snapshot

pytest.importorskip("timm")
pytestmark = pytest.mark.zoo

CNN = (2, 3, 72, 104)  #: /32 nets: odd maps at every stage, H != W
EVEN = (2, 3, 64, 96)  #: nets that add or concatenate maps of two resolutions (/32 exactly), H != W
ONE = (1, 3, 72, 104)  #: batch 1 where BatchNorm sees one value per channel (fails in train mode)
FIXED = (1, 3, 224, 224)  #: position embeddings or attention biases built for 224²
FIXED_256 = (1, 3, 256, 256)  #: the same, built for 256²

#: (timm name, input shape, notes): the smallest variant of each family.
MODELS: list[tuple[str, tuple[int, ...], str]] = [
    # resnet and its d/t stems, attention and squeeze variants
    ("resnet10t", CNN, "resnet: tiered stem, avg-pool downsample"),
    ("resnet18", CNN, "resnet"),
    ("resnet18d", CNN, "resnetd: deep stem"),
    ("ecaresnet26t", CNN, "resnet + ECA (conv1d attention)"),
    ("seresnext26d_32x4d", CNN, "resnext, grouped 3×3, SE"),
    ("gcresnet33ts", CNN, "byobnet, global context attention"),
    ("skresnet18", CNN, "sknet: selective kernel, split convs"),
    ("resnest14d", CNN, "resnest: split attention, grouped convs"),
    ("res2net50_14w_8s", CNN, "res2net: hierarchical split 3×3s"),
    ("tresnet_m", EVEN, "tresnet: space-to-depth stem, anti-aliasing (functional conv)"),
    ("lambda_resnet26t", FIXED_256, "lambda layers (conv3d position lambdas), fixed size"),
    ("halonet26t", FIXED_256, "halo attention, fixed size"),
    ("botnet26t_256", FIXED_256, "bottleneck transformer, fixed size"),
    # regnet
    ("regnetx_002", CNN, "regnet"),
    ("regnety_002", CNN, "regnet + SE"),
    ("regnetz_b16", CNN, "regnetz"),
    # efficientnet and the tf_ ('SAME'-padding) variants
    ("efficientnet_b0", CNN, "efficientnet"),
    ("efficientnet_lite0", CNN, "efficientnet lite"),
    ("efficientnet_es", CNN, "efficientnet edge"),
    ("tf_efficientnet_b0", CNN, "tf_: Conv2dSame (dynamic 'SAME' padding)"),
    ("tf_efficientnet_lite0", CNN, "tf_: Conv2dSame"),
    ("tf_efficientnetv2_b0", CNN, "tf_: efficientnet v2, 'SAME'"),
    ("tf_efficientnet_cc_b0_4e", CNN, "condconv: per-sample experts (CondConv2d)"),
    # mobilenets and NAS nets
    ("mobilenetv1_100", CNN, "mobilenet v1"),
    ("mobilenetv2_050", CNN, "mobilenet v2"),
    ("mobilenetv3_small_050", CNN, "mobilenet v3, hardswish"),
    ("tf_mobilenetv3_small_minimal_100", CNN, "tf_: mobilenet v3, Conv2dSame"),
    ("mobilenetv4_conv_small", ONE, "mobilenet v4: BatchNorm on the pooled 1×1 head, batch 1 (train mode needs 2)"),
    ("mobilenetv4_hybrid_medium", CNN, "mobilenet v4 with mobile MQA attention"),
    ("lcnet_050", CNN, "lcnet"),
    ("mnasnet_050", CNN, "mnasnet"),
    ("semnasnet_050", CNN, "mnasnet + SE"),
    ("spnasnet_100", CNN, "single-path nas"),
    ("fbnetc_100", CNN, "fbnet"),
    ("hardcorenas_a", CNN, "hardcorenas"),
    ("tinynet_e", CNN, "tinynet"),
    ("rexnet_100", CNN, "rexnet"),
    ("mixnet_s", CNN, "mixnet: MixedConv2d (its children are the convs)"),
    ("tf_mixnet_s", CNN, "tf_: MixedConv2d of Conv2dSame"),
    # ghostnets and reparameterisable nets (train-time branches)
    ("ghostnet_050", CNN, "ghostnet"),
    ("ghostnetv2_100", CNN, "ghostnet v2: DFC attention"),
    ("ghostnetv3_050", CNN, "ghostnet v3: reparameterisable branches"),
    ("repghostnet_050", CNN, "repghost"),
    ("repvgg_a0", CNN, "repvgg: 3×3 + 1×1 + identity branches"),
    ("mobileone_s0", CNN, "mobileone: over-parameterised branches"),
    ("repvit_m0_9", CNN, "repvit"),
    ("fastvit_t8", CNN, "fastvit: reparameterisable token mixer"),
    # normaliser-free and BiT: weight-standardised convs
    ("nf_resnet26", CNN, "nfnet: ScaledStdConv2d"),
    ("nf_regnet_b0", CNN, "nfnet: ScaledStdConv2d, regnet"),
    ("nf_ecaresnet26", CNN, "nfnet: ScaledStdConv2d, ECA"),
    ("dm_nfnet_f0", CNN, "nfnet: ScaledStdConv2dSame"),
    ("resnetv2_50x1_bit", CNN, "bit: StdConv2d"),
    ("resnetv2_50", CNN, "resnet v2, pre-activation"),
    # convnext and friends
    ("convnext_atto", CNN, "convnext: 7×7 depthwise"),
    ("convnext_femto", CNN, "convnext"),
    ("convnextv2_atto", CNN, "convnext v2: GRN"),
    ("inception_next_atto", CNN, "inception-next: split depthwise bands"),
    ("rdnet_tiny", CNN, "rdnet: dense concatenation"),
    ("starnet_s050", CNN, "starnet"),
    ("fasternet_t0", CNN, "fasternet: partial conv on a channel slice (functional)"),
    ("poolformer_s12", CNN, "metaformer: pooling mixer"),
    ("mambaout_femto", CNN, "mambaout: gated CNN"),
    # inception, xception
    ("inception_v3", (2, 3, 107, 139), "inception: needs >= 75², odd sizes"),
    ("inception_v4", (2, 3, 107, 139), "inception v4"),
    ("legacy_xception", CNN, "xception"),
    ("xception41", CNN, "xception, aligned"),
    # dla, dpn, hrnet, cspnet, densenet, vovnet, selecsls
    ("dla34", EVEN, "dla: tree aggregation adds /32-aligned maps"),
    ("dla46_c", EVEN, "dla"),
    ("dla46x_c", EVEN, "dla, grouped"),
    ("dpn48b", CNN, "dpn: dual path, grouped"),
    ("hrnet_w18_small", EVEN, "hrnet: multi-resolution fusion"),
    ("hrnet_w18_small_v2", EVEN, "hrnet"),
    ("cspresnet50", CNN, "cspnet"),
    ("cspdarknet53", CNN, "cspnet, darknet"),
    ("cs3darknet_focus_s", CNN, "cspnet, focus stem"),
    ("darknet17", CNN, "darknet"),
    ("densenet121", CNN, "densenet"),
    ("ese_vovnet19b_dw", CNN, "vovnet, depthwise"),
    ("selecsls42b", CNN, "selecsls"),
    ("gernet_s", CNN, "gernet"),
    ("hgnetv2_b0", CNN, "hgnet v2: learnable affine blocks"),
    # vit / hybrid / attention
    ("vit_tiny_r_s16_p8_224", FIXED, "vit hybrid: resnet stem + patch conv, fixed size"),
    ("convit_tiny", FIXED, "convit: gated positional attention, fixed size"),
    ("levit_128s", FIXED, "levit: conv stem, attention biases for 224²"),
    ("levit_conv_128s", FIXED, "levit, 1×1 convs for linears"),
    ("coat_lite_tiny", FIXED, "coat: conv position encodings, fixed size"),
    ("xcit_nano_12_p16_224", FIXED, "xcit: conv patch embed, local patch interaction"),
    ("visformer_tiny", FIXED, "visformer, fixed size"),
    ("efficientformer_l1", FIXED, "efficientformer, fixed size"),
    ("efficientformerv2_s0", FIXED, "efficientformer v2, fixed size"),
    ("tiny_vit_5m_224", FIXED, "tiny-vit: window attention, fixed size"),
    ("coatnet_nano_rw_224", FIXED, "coatnet: MBConv + relative attention"),
    ("maxvit_rmlp_pico_rw_256", FIXED_256, "maxvit: block and grid partitions of 256²"),
    ("pvt_v2_b0", CNN, "pvt v2: overlapping conv patch embeds"),
    ("edgenext_xx_small", CNN, "edgenext: split depthwise + XCA"),
    ("mobilevit_xxs", EVEN, "mobilevit: unfold into 2×2 patches"),
    ("mobilevitv2_050", EVEN, "mobilevit v2: separable attention"),
    ("efficientvit_m0", (1, 3, 64, 64), "efficientvit (MSRA): cascaded group attention, square; batch 1 as above"),
    ("efficientvit_b0", CNN, "efficientvit (MIT): lite multi-scale attention, hardswish"),
]

#: Models whose full-rank conversion must be exact, with the conv adapter class it must rewrite among others
#: (a conversion costs a few real forwards: a handful). MixedConv2d's children are depthwise or 1×1 in every
#: mixnet, so never candidates: tf_mixnet_s converts its Conv2dSame stem.
CONVERT = {
    "tf_efficientnet_b0": "Conv2dSame",
    "tf_mixnet_s": "Conv2dSame",
    "nf_resnet26": "ScaledStdConv2d",
    "dm_nfnet_f0": "ScaledStdConv2dSame",
    "resnetv2_50x1_bit": "StdConv2d",
}

#: Models whose eval-mode analysis also runs convaudit's fvcore cross-check (a real forward under jit tracing).
CROSS_CHECK = {"resnet18", "efficientnet_b0", "tf_efficientnet_b0", "dla34", "hrnet_w18_small", "convnext_atto"}


def spec(name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "id": f"timm:{name}",
        "source": f"timm:{name}",
        "shape": list(shape),
        "convert": name in CONVERT,
        "cross_check": name in CROSS_CHECK,
    }


SPECS = {f"timm:{name}": spec(name, shape) for name, shape, _ in MODELS}
IDS = [name for name, _, _ in MODELS]
CASES = list(SPECS)


@pytest.fixture(scope="module")
def zoo(request: pytest.FixtureRequest) -> ZooRunner:
    return shared_runner(request.session, list(SPECS.values()))


def _check(zoo: ZooRunner, case: str, check: str) -> None:
    problems = failures(zoo.result(case), check, adapter=CONVERT.get(case.removeprefix("timm:"), ""))
    assert not problems, "\n".join(problems)


def test_the_checks_name_the_conv_that_differs_and_the_harm() -> None:
    """The harness itself: a conv MAC off by one, a conv missing and a buffer written are each reported."""
    layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    model = nn.Sequential(layers.Conv2dSame(3, 8, 3, stride=2), nn.BatchNorm2d(8), layers.MixedConv2d(8, 8, [3, 5]))
    model.eval()
    x = torch.randn(2, 3, 15, 18)
    a = convaudit.analyze(model, (x,))
    assert [layer.name for layer in a.layers] == ["0", "2.0", "2.1"]
    clean = compare(a.layers, oracle(model, (x,)))
    assert not (clean["only_ours"] or clean["only_oracle"] or clean["macs"] or clean["calls"])
    off = dataclasses.replace(a.layers[0], macs=a.layers[0].macs + 1)
    diff = compare([off, a.layers[1]], oracle(model, (x,)))
    assert diff["macs"] == {"0": [off.macs, off.macs - 1]} and diff["only_oracle"] == ["2.1"]
    result = {"source": "net", "shape": [2, 3, 15, 18], "path": "fx", "diff": diff, "layers": 2}
    result.update(conv_macs=1, oracle_conv_macs=1, module_conv_macs=1)
    (missing, macs) = failures(result, "oracle")
    assert "only FlopCounterMode: ['2.1']" in missing and f"at 0: {off.macs:,} vs {off.macs - 1:,}" in macs
    before = snapshot(model)
    norm, mixed = model[1], model[2]
    assert isinstance(norm, nn.BatchNorm2d) and isinstance(norm.running_mean, torch.Tensor)
    norm.running_mean[0] += 1
    mixed.train()
    assert harm(before, model) == [
        "state_dict['1.running_mean'] changed (torch.float32[8] -> torch.float32[8])",
        "training flags changed: ['2', '2.0', '2.1']",
    ]


def test_every_family_is_covered() -> None:
    assert len(MODELS) >= 60 and len(IDS) == len(set(IDS))
    assert set(CONVERT) <= set(IDS) and set(CROSS_CHECK) <= set(IDS)


@pytest.mark.parametrize("zoo_case", CASES, ids=IDS)
def test_conv_macs_and_calls_match_flop_counter(zoo: ZooRunner, zoo_case: str) -> None:
    _check(zoo, zoo_case, "oracle")


@pytest.mark.parametrize("zoo_case", CASES, ids=IDS)
def test_model_is_bit_identical_after_analysis_in_both_modes(zoo: ZooRunner, zoo_case: str) -> None:
    _check(zoo, zoo_case, "harm")


@pytest.mark.parametrize("zoo_case", CASES, ids=IDS)
def test_every_op_is_costed(zoo: ZooRunner, zoo_case: str) -> None:
    _check(zoo, zoo_case, "costed")


@pytest.mark.parametrize("zoo_case", [f"timm:{name}" for name in CONVERT], ids=list(CONVERT))
def test_full_rank_conversion_of_conv_adapters_is_exact(zoo: ZooRunner, zoo_case: str) -> None:
    _check(zoo, zoo_case, "convert")
