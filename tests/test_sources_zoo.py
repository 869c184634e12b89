"""Zoo sources: ``torchvision:NAME`` and ``timm:NAME``, untrained (nothing fetched), seeded, at their own input size.

The zoo-marked tests run a few torchvision and timm models as their builders return them (train mode):
analysed in eval mode by default and in train mode on request, each leaves the model's full
``state_dict`` bit-identical and every training flag as it was; in eval mode the training-only heads of
inception_v3 and googlenet are not counted. Oracle: FlopCounterMode on a real forward in the same mode
(conv FLOPs = 2·MACs).
"""

import copy
import socket
import sys

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import convaudit
from convaudit.errors import ConvauditError, ModelLoadError
from convaudit.sources import load
from convaudit.sources.zoo import VIDEO_FRAMES, load_zoo, seeded
from convaudit.vocab import WeightsOrigin

timm = pytest.importorskip("timm")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection can be opened and timm cannot load pretrained weights: building must not need either."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a zoo source tried to fetch something")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", refuse)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def flags(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def oracle_conv_macs(model: nn.Module, x: torch.Tensor, training: bool) -> int:
    """Conv MACs of a real forward in the given mode (on a copy: a train-mode forward updates buffers)."""
    twin = copy.deepcopy(model).train(training)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        twin(x)
    return sum(n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op)) // 2


# ---------------------------------------------------------------- timm:


def test_timm_source_is_untrained_at_its_pretrained_cfg_size(offline: None) -> None:
    loaded = load("timm:maxvit_rmlp_pico_rw_256")
    assert type(loaded.model).__name__ == "MaxxVit" and loaded.args[0].shape == (1, 3, 256, 256)
    assert loaded.args[0].is_meta and loaded.model.pretrained_cfg["input_size"] == (3, 256, 256)
    assert loaded.notes == [
        "input shape 1,3,256,256 from timm's pretrained_cfg['input_size']; pass --input-shape to set it"
    ]
    assert loaded.weights == WeightsOrigin.INITIALISED
    assert loaded.weights_source == "timm.create_model('maxvit_rmlp_pico_rw_256', pretrained=False) under seed 0"
    assert loaded.entry == "timm.create_model('maxvit_rmlp_pico_rw_256')"


def test_timm_tags_and_input_shape_override(offline: None) -> None:
    loaded = load("timm:resnet18.a1_in1k", input_shapes=[(2, 3, 64, 48)])
    assert loaded.model.pretrained_cfg["tag"] == "a1_in1k" and loaded.args[0].shape == (2, 3, 64, 48)
    assert loaded.notes == []  # no word about a size that was not used


@pytest.mark.parametrize(
    "name,message",
    [
        ("resnt18", "timm:resnt18: no such timm model; did you mean resnet18, resnet18d, skresnet18?"),
        ("resnet18.bogus_tag", "timm:resnet18.bogus_tag: no such timm model; did you mean resnet18."),
        ("", "timm:: no such timm model; see timm.list_models()"),
    ],
)
def test_unknown_timm_names_suggest_close_ones(name: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load(f"timm:{name}")


def test_timm_missing_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(
        ModelLoadError, match=r"timm:resnet18 needs timm, which is not installed; pip install 'convaudit\[timm\]'"
    ):
        load("timm:resnet18")


def test_a_failing_timm_builder_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of cheese\nsecond line")

    monkeypatch.setattr(timm, "create_model", broken)
    with pytest.raises(ModelLoadError, match=r"^timm:resnet18: timm.create_model raised RuntimeError: out of cheese$"):
        load("timm:resnet18")


# ---------------------------------------------------------------- torchvision:


@pytest.mark.parametrize(
    "name,shape,where",
    [
        ("inception_v3", (1, 3, 299, 299), "torchvision's Inception_V3_Weights.IMAGENET1K_V1 (crop_size)"),
        ("efficientnet_b3", (1, 3, 300, 300), "torchvision's EfficientNet_B3_Weights.IMAGENET1K_V1 (crop_size)"),
        ("resnet18", (1, 3, 224, 224), "torchvision's ResNet18_Weights.IMAGENET1K_V1 (crop_size)"),
        ("lraspp_mobilenet_v3_large", (1, 3, 520, 520), "COCO_WITH_VOC_LABELS_V1 (resize_size)"),
        ("r3d_18", (1, 3, VIDEO_FRAMES, 112, 112), "KINETICS400_V1 (crop_size), 16 frames (torchvision's video"),
    ],
)
def test_torchvision_sizes_come_from_the_models_documentation(name: str, shape: tuple, where: str) -> None:
    loaded = load(f"torchvision:{name}")
    assert loaded.args[0].shape == shape
    (note,) = loaded.notes
    assert note.startswith(f"input shape {','.join(map(str, shape))} from ") and where in note


def test_zoo_builders_are_seeded_and_leave_the_global_generator_alone() -> None:
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first, second = load_zoo("torchvision:mobilenet_v3_small").model, load_zoo("torchvision:mobilenet_v3_small").model
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream did not move
    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )
    t1, t2 = load_zoo("timm:resnet18").model, load_zoo("timm:resnet18").model
    assert torch.equal(t1.conv1.weight, t2.conv1.weight) and torch.equal(torch.get_rng_state(), before)
    with seeded():
        expected = torch.randn(3)
    with seeded():
        assert torch.equal(torch.randn(3), expected)


# ---------------------------------------------------------------- the zoo, as built (train mode), analysed


ZOO_MODELS = [
    ("torchvision:googlenet", (2, 3, 96, 80)),
    ("torchvision:inception_v3", (2, 3, 299, 299)),  # its aux head (train mode) needs about this size
    ("torchvision:mobilenet_v3_small", (2, 3, 64, 72)),
    ("timm:mobilenetv4_conv_small", (2, 3, 64, 72)),
    ("timm:efficientvit_m0", (2, 3, 64, 64)),
    ("timm:tf_efficientnet_b0", (2, 3, 64, 72)),
    ("timm:resnet18d", (2, 3, 64, 72)),
]


@pytest.mark.zoo
@pytest.mark.parametrize("train_mode", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("source,shape", ZOO_MODELS, ids=[s for s, _ in ZOO_MODELS])
def test_zoo_models_are_bit_identical_after_analysis_in_both_modes(source: str, shape: tuple, train_mode: bool) -> None:
    model = load(source).model
    assert model.training  # as the builders return them
    first_norm = next(m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    first_norm.eval()  # mixed flags: each module's own must come back
    with torch.no_grad():
        model(torch.randn(*shape))  # running statistics and counters that are not their initial values
    before, modes = state(model), flags(model)
    a = convaudit.analyze(model, input_shape=shape, train_mode=train_mode, cross_check=True)
    assert a.mode == ("train" if train_mode else "eval")
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key].dtype == value.dtype and torch.equal(after[key], value), key
    assert flags(model) == modes


@pytest.mark.zoo
def test_inception_v3_in_eval_mode_does_not_count_its_aux_head() -> None:
    loaded = load("torchvision:inception_v3")  # 299² from its weights' transforms, train mode as built
    model, x = loaded.model, torch.randn(1, 3, 299, 299)
    a = convaudit.analyze(model, loaded.args)
    assert a.input_shapes == ((1, 3, 299, 299),)
    assert a.totals.conv_macs == oracle_conv_macs(model, x, training=False) == 5_711_168_096
    assert set(a.uncalled_convs) == {"AuxLogits.conv0.conv", "AuxLogits.conv1.conv"}
    assert convaudit.analyze(model, loaded.args, train_mode=True).totals.conv_macs == 5_716_083_296
    # the training graph against a real train-mode forward (batch 2: the aux head's BatchNorm needs it)
    x2 = torch.randn(2, 3, 299, 299)
    assert convaudit.analyze(model, x2, train_mode=True).totals.conv_macs == oracle_conv_macs(model, x2, training=True)
    assert model.training


@pytest.mark.zoo
def test_googlenet_in_eval_mode_does_not_count_its_aux_heads() -> None:
    model = load("torchvision:googlenet").model
    x = torch.randn(2, 3, 224, 224)
    a = convaudit.analyze(model, x)
    assert a.totals.conv_macs == oracle_conv_macs(model, x, training=False)
    assert {n.split(".")[0] for n in a.uncalled_convs} == {"aux1", "aux2"}
    trained = convaudit.analyze(model, x, train_mode=True)
    assert trained.totals.conv_macs == oracle_conv_macs(model, x, training=True) > a.totals.conv_macs


@pytest.mark.zoo
def test_batch_one_batchnorm_model_works_in_eval_mode() -> None:
    loaded = load("timm:mobilenetv4_conv_small")  # BatchNorm on the pooled 1×1 head: batch 1 fails in train mode
    x = torch.randn(1, 3, 224, 224)
    assert convaudit.analyze(loaded.model, loaded.args).totals.conv_macs == oracle_conv_macs(loaded.model, x, False)
    with pytest.raises(ConvauditError, match=r"more than 1 value per channel.*drop --train-mode"):
        convaudit.analyze(loaded.model, loaded.args, train_mode=True)


@pytest.mark.zoo
def test_a_vit_is_analysed_at_the_size_it_is_built_for() -> None:
    loaded = load("torchvision:vit_b_32")
    assert loaded.args[0].shape == (1, 3, 224, 224) and "from VisionTransformer.image_size" in loaded.notes[0]
