"""Calibration inputs from image files: the model's own preprocessing, batches of one size, one-line refusals.

(Recovery's progress bar is tested with the others in tests/test_cli_progress.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from convaudit.errors import UsageError
from convaudit.sources.images import IMAGES_PER_BATCH, image_batches, image_files, preprocessor


def write(directory: Path, n: int, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> list[Path]:
    directory.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"{i:02d}.png"
        Image.new(mode, size, color=(i * 20, 100, 200) if mode == "RGB" else i * 20).save(path)
        paths.append(path)
    return paths


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A model.py preprocess: the image as read, one sample C×H×W."""
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).float()
    return data.reshape(image.size[1], image.size[0], -1).permute(2, 0, 1) / 255


def test_image_files_are_the_images_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, 3)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in image_files(str(tmp_path))] == ["00.png", "01.png", "02.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=r"--holdout .*empty: no image files"):
        image_files(str(empty), "--holdout")


def test_batches_stack_samples_and_keep_the_images_mode(tmp_path: Path) -> None:
    files = write(tmp_path, IMAGES_PER_BATCH + 2, mode="L")  # grey: preprocess gets it as read
    batches = image_batches(files, to_tensor, rgb=False, ndim=4)
    assert [tuple(b.shape) for b in batches] == [(IMAGES_PER_BATCH, 1, 30, 40), (2, 1, 30, 40)]
    assert torch.allclose(batches[1][1, 0, 0, 0], torch.tensor((IMAGES_PER_BATCH + 1) * 20 / 255))
    already_batched = image_batches(files[:3], lambda im: to_tensor(im)[None], rgb=False, ndim=4)
    assert tuple(already_batched[0].shape) == (3, 1, 30, 40)


def test_batches_refuse_mixed_sizes_and_unreadable_files_in_one_line(tmp_path: Path) -> None:
    files = write(tmp_path, 2) + write(tmp_path / "big", 1, size=(50, 50))
    with pytest.raises(UsageError, match=r"00.png preprocesses to \(3, 50, 50\), 00.png to \(3, 30, 40\)"):
        image_batches(files, to_tensor, rgb=True)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UsageError, match=r"broken\.png cannot be read as an image"):
        image_batches([bad], to_tensor, rgb=True)
    with pytest.raises(UsageError, match="gave a 2-d tensor"):
        image_batches(files[:1], lambda im: to_tensor(im)[0], rgb=True, ndim=4)


def test_model_py_preprocess_comes_first_and_nothing_is_guessed() -> None:
    import torch.nn as nn

    assert preprocessor("net.py", nn.Identity(), {"preprocess": to_tensor}) == (to_tensor, False)
    with pytest.raises(UsageError, match=r"--images needs the model's preprocessing: define preprocess\(image\)"):
        preprocessor("net.py", nn.Identity(), {})


def test_zoo_sources_use_their_own_eval_transforms(tmp_path: Path) -> None:
    import timm
    import torchvision

    (file,) = write(tmp_path, 1, size=(300, 260))
    image = Image.open(file).convert("RGB")
    tv, rgb = preprocessor("torchvision:resnet18", nn_module(), {})
    expected = torchvision.models.ResNet18_Weights.DEFAULT.transforms()(image)  # oracle: torchvision's own
    assert rgb and torch.equal(tv(image), expected) and tuple(expected.shape) == (3, 224, 224)
    model = timm.create_model("resnet18", pretrained=False)
    tm, _ = preprocessor("timm:resnet18", model, {})
    config = timm.data.resolve_data_config({}, model=model)
    assert tuple(tm(image).shape) == config["input_size"]


def nn_module():
    import torch.nn as nn

    return nn.Identity()
