"""monai and segmentation_models_pytorch oracle tests: 3-D, transposed, dilated, attention-gated and
encoder-decoder nets nobody here wrote, against FlopCounterMode, and no harm.

Each model runs in a process of its own (``tests/zoo_worker.py`` says what is checked and how), built
from its constructor under seed 0 with no weights fetched (``encoder_weights=None``, ``pretrained=False``),
at a small input the architecture accepts (H != W where it may; 3-D volumes with three different sizes).

Run with ``pytest -m zoo tests/test_zoo_third_party.py`` (CI runs it).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.zoo_worker import ZooRunner, failures, shared_runner

pytest.importorskip("monai")
pytest.importorskip("segmentation_models_pytorch")
pytestmark = pytest.mark.zoo

VOLUME = (1, 1, 32, 48, 40)  #: 3-D nets with three /8 levels: 32×48×40 → 4×6×5
IMAGE = (2, 3, 64, 96)  #: 2-D encoder-decoders (/32, skips must align), H != W
ONE = (1, 3, 64, 96)  #: batch 1: BatchNorm on a pooled 1×1 map works in eval mode (train mode takes batch 2)

_3D = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2}
_2D = {"spatial_dims": 2, "in_channels": 3, "out_channels": 2}


def _smp(encoder: str) -> dict[str, Any]:
    return {"encoder_name": encoder, "encoder_weights": None, "classes": 2}


#: (model, input shape, notes); its constructor's arguments are in :data:`KWARGS`, by the same model id.
MODELS: list[tuple[str, tuple[int, ...], str]] = [
    ("monai:BasicUNet", VOLUME, "3-D; its trace takes another branch (torch.jit.isinstance): the hook path"),
    ("monai:UNet", VOLUME, "3-D, residual units, PReLU, transposed convs"),
    ("monai:DynUNet", VOLUME, "3-D nnU-Net, transposed convs"),
    ("monai:SegResNet", VOLUME, "3-D, group norm, trilinear upsampling"),
    ("monai:VNet", (1, 1, 32, 48, 32), "3-D, 5×5×5 convs, /16"),
    ("monai:HighResNet", (1, 1, 24, 32, 28), "3-D, dilated residual convs at full resolution"),
    ("monai:resnet10", VOLUME, "3-D resnet"),
    ("monai:AttentionUnet", IMAGE, "2-D, attention gates"),
    ("monai:DenseNet121", IMAGE, "2-D densenet"),
    ("monai:FlexibleUNet", IMAGE, "2-D, monai's efficientnet-b0 encoder ('SAME' padding by F.pad)"),
    ("smp:Unet-resnet18", IMAGE, "smp U-Net"),
    ("smp:UnetPlusPlus-resnet18", IMAGE, "smp U-Net++: nested skips"),
    ("smp:FPN-resnet18", IMAGE, "smp FPN"),
    ("smp:DeepLabV3-resnet18", ONE, "smp DeepLabV3: dilated encoder, ASPP; BatchNorm on its 1×1 pool at batch 1"),
    ("smp:DeepLabV3Plus-mobilenet_v2", IMAGE, "smp DeepLabV3+: separable ASPP, mobilenet encoder"),
    ("smp:PAN-resnet18", (1, 3, 256, 288), "smp PAN: its pyramid pools the /32 map by 8 more, so >= 256; batch 1"),
    ("smp:UPerNet-resnet18", ONE, "smp UPerNet: pyramid pooling + FPN; BatchNorm on its 1×1 pool at batch 1"),
    ("smp:Linknet-efficientnet-b0", IMAGE, "smp Linknet, efficientnet-pytorch encoder (Conv2dStaticSamePadding)"),
    ("smp:PSPNet-resnet18", IMAGE, "smp PSPNet"),
    ("smp:MAnet-timm-efficientnet-b0", IMAGE, "smp MA-Net: position and multi-scale attention"),
    ("smp:Segformer-mit_b0", IMAGE, "smp Segformer: mix transformer encoder (efficient attention)"),
    ("smp:Unet-tu-mobilenetv3_small_050", IMAGE, "smp U-Net on a timm encoder (tu-)"),
    ("smp:FPN-mobileone_s0", IMAGE, "smp FPN on mobileone (reparameterisable branches)"),
]

KWARGS: dict[str, dict[str, Any]] = {
    "monai:BasicUNet": {**_3D, "features": (8, 8, 16, 32, 64, 8)},
    "monai:UNet": {**_3D, "channels": (8, 16, 32, 64), "strides": (2, 2, 2), "num_res_units": 2},
    "monai:DynUNet": {
        **_3D,
        "kernel_size": [3, 3, 3, 3],
        "strides": [1, 2, 2, 2],
        "upsample_kernel_size": [2, 2, 2],
        "filters": (8, 16, 32, 64),
    },
    "monai:SegResNet": {**_3D, "init_filters": 8},
    "monai:VNet": _3D,
    "monai:HighResNet": _3D,
    "monai:resnet10": {"spatial_dims": 3, "n_input_channels": 1, "num_classes": 2},
    "monai:AttentionUnet": {**_2D, "channels": (8, 16, 32, 64), "strides": (2, 2, 2)},
    "monai:DenseNet121": _2D,
    "monai:FlexibleUNet": {"in_channels": 3, "out_channels": 2, "backbone": "efficientnet-b0", "pretrained": False},
    **{name: _smp(name.split("-", 1)[1]) for name, _, _ in MODELS if name.startswith("smp:")},
}

#: Models whose eval-mode analysis also runs convaudit's fvcore cross-check (a real forward under jit tracing).
CROSS_CHECK = {"monai:UNet", "monai:DynUNet", "smp:Unet-resnet18"}

#: Not here: monai's UNETR and SwinUNETR import einops, which the test extras do not install.


def spec(model: str, shape: tuple[int, ...]) -> dict[str, Any]:
    source = model.split("-", 1)[0]
    return {
        "id": model,
        "source": source,
        "shape": list(shape),
        "kwargs": KWARGS[model],
        "cross_check": model in CROSS_CHECK,
    }


SPECS = {model: spec(model, shape) for model, shape, _ in MODELS}
IDS = [model for model, _, _ in MODELS]


@pytest.fixture(scope="module")
def zoo(request: pytest.FixtureRequest) -> ZooRunner:
    return shared_runner(request.session, list(SPECS.values()))


def _check(zoo: ZooRunner, case: str, check: str) -> None:
    problems = failures(zoo.result(case), check)
    assert not problems, "\n".join(problems)


def test_the_list_is_complete() -> None:
    assert len(MODELS) >= 20 and len(IDS) == len(set(IDS)) and set(KWARGS) == set(IDS) and set(IDS) >= CROSS_CHECK


@pytest.mark.parametrize("zoo_case", IDS, ids=IDS)
def test_conv_macs_and_calls_match_flop_counter(zoo: ZooRunner, zoo_case: str) -> None:
    _check(zoo, zoo_case, "oracle")


@pytest.mark.parametrize("zoo_case", IDS, ids=IDS)
def test_model_is_bit_identical_after_analysis_in_both_modes(zoo: ZooRunner, zoo_case: str) -> None:
    _check(zoo, zoo_case, "harm")


@pytest.mark.parametrize("zoo_case", IDS, ids=IDS)
def test_every_op_is_costed(zoo: ZooRunner, zoo_case: str) -> None:
    _check(zoo, zoo_case, "costed")
