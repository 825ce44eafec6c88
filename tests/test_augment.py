"""Batch augmentation: crop and flip geometry against references, seeding, shapes, and its place in training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groundup.callbacks.setup import SetupLearnerCB
from groundup.data.augment import BatchAugment, crop_boxes, pad_crops, resample_boxes, whole_view
from groundup.data.folder import ImageDataLoaders
from groundup.inference import model_input
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import simple_cnn


def known_image(n: int = 1, h: int = 40, w: int = 48) -> torch.Tensor:
    """A uint8 (n, h, w, 3) batch whose every pixel differs: x and y ramps and a mix, per image."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    imgs = [torch.stack([(5 * x + k) % 256, (3 * y + 7 * k) % 256, (x * y + k) % 256], -1) for k in range(n)]
    return torch.stack(imgs).to(torch.uint8)


def bilinear_reference(img: np.ndarray, box, size: int, flip: bool) -> np.ndarray:
    """A straightforward per-pixel bilinear resize of one crop box (pixel centers at half-integers, edges clamped)."""
    left, top, w, h = box
    height, width, _ = img.shape
    out = np.zeros((size, size, img.shape[2]))
    for i in range(size):
        for j in range(size):
            jj = size - 1 - j if flip else j
            x = left + (jj + 0.5) * w / size - 0.5
            y = top + (i + 0.5) * h / size - 0.5
            x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
            x0, y0 = math.floor(x), math.floor(y)
            x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
            fx, fy = x - x0, y - y0
            top_row = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bottom_row = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[i, j] = top_row * (1 - fy) + bottom_row * fy
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def test_an_integer_box_at_its_own_size_is_an_exact_crop():
    xb = known_image(2)
    boxes = torch.tensor([[8.0, 4.0, 24.0, 24.0], [0.0, 16.0, 24.0, 24.0]])
    out = resample_boxes(xb, boxes, torch.tensor([False, False]), 24)
    assert torch.equal(out[0], xb[0, 4:28, 8:32])
    assert torch.equal(out[1], xb[1, 16:40, 0:24])


def test_a_flipped_box_is_the_mirror_image_of_the_crop():
    xb = known_image(1)
    box = torch.tensor([[8.0, 4.0, 24.0, 24.0]])
    out = resample_boxes(xb, box, torch.tensor([True]), 24)
    assert torch.equal(out[0], xb[0, 4:28, 8:32].flip(1))


def test_halving_a_box_averages_each_two_by_two_block():
    xb = known_image(1, 32, 32)
    out = resample_boxes(xb, torch.tensor([[0.0, 0.0, 32.0, 32.0]]), torch.tensor([False]), 16)
    pooled = F.avg_pool2d(xb.permute(0, 3, 1, 2).double(), 2).round().permute(0, 2, 3, 1)
    assert (out.double() - pooled).abs().max() <= 1  # rounding of the .5 cases in float32


@pytest.mark.parametrize("box, size, flip", [((5.3, 2.7, 30.1, 21.9), 17, False), ((0.0, 0.0, 48.0, 40.0), 29, True),
                                             ((11.5, 9.25, 12.0, 20.0), 31, True)])
def test_any_box_matches_a_per_pixel_bilinear_reference(box, size, flip):
    xb = known_image(1)
    out = resample_boxes(xb, torch.tensor([box]), torch.tensor([flip]), size)
    ref = bilinear_reference(xb[0].double().numpy(), box, size, flip)
    assert np.abs(out[0].numpy().astype(int) - ref.astype(int)).max() <= 1


def test_whole_view_is_the_identity_at_the_same_size_and_a_resize_otherwise():
    xb = known_image(3, 40, 40)
    assert whole_view(xb, 40) is xb
    small = whole_view(xb, 20)
    assert small.shape == (3, 20, 20, 3) and small.dtype == torch.uint8
    pooled = F.avg_pool2d(xb.permute(0, 3, 1, 2).double(), 2).round().permute(0, 2, 3, 1)
    assert (small.double() - pooled).abs().max() <= 1


def test_crop_boxes_stay_inside_and_cover_the_asked_area_and_aspect():
    g = torch.Generator().manual_seed(0)
    boxes = crop_boxes(2000, 80, 80, (0.35, 1.0), (3 / 4, 4 / 3), generator=g)
    left, top, w, h = boxes.unbind(1)
    assert bool((left >= 0).all()) and bool((top >= 0).all())
    assert bool((left + w <= 80 + 1e-9).all()) and bool((top + h <= 80 + 1e-9).all())
    area = w * h / 6400
    assert area.min() >= 0.35 * 0.74 and area.max() <= 1.0 + 1e-9  # boxes that did not fit were shrunk
    fits = (w < 80) & (h < 80)
    aspect = (w / h)[fits]
    assert aspect.min() >= 3 / 4 - 1e-9 and aspect.max() <= 4 / 3 + 1e-9
    assert area[fits].min() >= 0.35 - 1e-9
    assert area.std() > 0.1 and left.std() > 1  # they do vary


def test_augmented_batches_have_the_training_size_and_dtype():
    aug = BatchAugment(32, seed=0)
    out = aug(known_image(5, 40, 40), epoch=0, batch=0)
    assert out.shape == (5, 32, 32, 3) and out.dtype == torch.uint8


def test_same_seed_same_batches_and_each_batch_its_own_draw():
    xb = known_image(8, 40, 40)
    a, b = BatchAugment(32, seed=3), BatchAugment(32, seed=3)
    assert torch.equal(a(xb, epoch=2, batch=5), b(xb, epoch=2, batch=5))
    assert not torch.equal(a(xb, epoch=2, batch=5), a(xb, epoch=2, batch=6))
    assert not torch.equal(a(xb, epoch=2, batch=5), a(xb, epoch=3, batch=5))
    assert not torch.equal(a(xb, epoch=2, batch=5), BatchAugment(32, seed=4)(xb, epoch=2, batch=5))
    other_rank = BatchAugment(32, seed=3)
    other_rank.rank = 1
    assert not torch.equal(a(xb, epoch=2, batch=5), other_rank(xb, epoch=2, batch=5))


def test_about_half_the_images_are_flipped_and_none_without_flip():
    _, flips = BatchAugment(32, seed=0).params(1000, 40, 40, epoch=0, batch=0)
    assert 400 < int(flips.sum()) < 600
    _, flips = BatchAugment(32, flip=False, seed=0).params(1000, 40, 40, epoch=0, batch=0)
    assert not bool(flips.any())


def test_scale_one_without_flip_is_the_whole_view():
    xb = known_image(4, 40, 40)
    aug = BatchAugment(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, seed=0)
    assert torch.equal(aug(xb, epoch=0, batch=0), whole_view(xb, 32))


def test_outside_training_preprocessing_gives_the_whole_view_at_its_size():
    from groundup.data.preprocessing import Preprocessing
    from groundup.data.transforms import to_nchw

    pre = Preprocessing([0.5] * 3, [0.25] * 3, size=32)
    xb = known_image(4, 40, 40)
    assert torch.equal(pre(xb), to_nchw(pre.normalize(whole_view(xb, 32))))
    assert torch.equal(pre(xb), pre(xb))  # deterministic
    small = known_image(4, 24, 24)  # e.g. an augmented training batch at a smaller training size
    assert pre(small, resize=False).shape == (4, 3, 24, 24)
    assert torch.equal(pre(small, resize=False), to_nchw(pre.normalize(small)))


def test_stored_size_is_a_quarter_larger_by_default():
    assert BatchAugment(64).stored_size == 80
    assert BatchAugment(64, stored_scale=1.0).stored_size == 64


def pad_reference(img: np.ndarray, corner, pad: int, flip: bool) -> np.ndarray:
    """numpy's reflect padding, then the window at `corner` (x, y) of the image's size, mirrored when `flip`."""
    h, w, _ = img.shape
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    x, y = corner
    window = padded[y:y + h, x:x + w]
    return window[:, ::-1] if flip else window


def test_pad_crops_are_reflect_padded_windows_as_numpy_cuts_them():
    xb = known_image(6, 20, 20)
    corners = torch.tensor([[0, 0], [8, 8], [4, 4], [0, 8], [3, 5], [8, 1]])
    flips = torch.tensor([False, True, False, True, True, False])
    out = pad_crops(xb, corners, flips, pad=4)
    assert out.shape == xb.shape and out.dtype == torch.uint8
    for k in range(6):
        want = pad_reference(xb[k].numpy(), corners[k].tolist(), 4, bool(flips[k]))
        np.testing.assert_array_equal(out[k].numpy(), want)
    assert torch.equal(out[2], xb[2])  # the middle window is the image itself


def test_pad_augment_shifts_by_up_to_a_sixteenth_at_the_training_size_and_stores_at_it():
    aug = BatchAugment(64, crop="pad", seed=0)
    assert aug.stored_size == 64 and aug.shift == 4  # no larger stored images: objects keep their scale
    corners, flips = aug.params(2000, 64, 64, epoch=0, batch=0)
    assert corners.shape == (2000, 2) and int(corners.min()) == 0 and int(corners.max()) == 8
    assert 800 < int(flips.sum()) < 1200
    assert BatchAugment(64, crop="pad", pad=2).shift == 2
    xb = known_image(8, 64, 64)
    out = aug(xb, epoch=1, batch=2)
    corners, flips = aug.params(8, 64, 64, epoch=1, batch=2)
    for k in range(8):
        np.testing.assert_array_equal(out[k].numpy(), pad_reference(xb[k].numpy(), corners[k].tolist(), 4, bool(flips[k])))
    assert torch.equal(out, BatchAugment(64, crop="pad", seed=0)(xb, epoch=1, batch=2))  # seeded: a resume repeats it
    # Stored larger (or the size changed between epochs): the image is resized first, then shifted.
    big = known_image(3, 80, 80)
    assert aug(big, epoch=0, batch=0).shape == (3, 64, 64, 3)


@pytest.mark.parametrize("kwargs, match", [({"scale": (0.0, 1.0)}, "scale"), ({"scale": (0.5, 1.5)}, "scale"),
                                           ({"scale": (0.9, 0.5)}, "scale"), ({"ratio": (2.0, 1.0)}, "ratio"),
                                           ({"stored_scale": 0.5}, "stored_scale"), ({"size": 0}, "size"),
                                           ({"crop": "zoom"}, "crop must be one of resize, pad"), ({"pad": 0}, "pad")])
def test_bad_options_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        BatchAugment(**{"size": 32, **kwargs})


def test_a_float_batch_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"uint8 image batch.*float32 of shape \(2, 8, 8, 3\)"):
        BatchAugment(8)(torch.zeros(2, 8, 8, 3))


def test_from_folder_caches_training_images_larger_and_validation_at_size(image_folder):
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=0,
                                       augment=BatchAugment(16, seed=0))
    try:
        assert next(iter(dls.train))[0].shape == (4, 20, 20, 3)
        assert next(iter(dls.valid))[0].shape[1:] == (16, 16, 3)
        assert dls.augment.stored_size == 20
    finally:
        dls.close()


def test_from_folder_augment_true_is_seeded_by_the_loader_seed(image_folder):
    a = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=7, augment=True)
    b = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=7, augment=True)
    assert a.augment.seed == b.augment.seed == a.train.seed
    assert ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=7).augment is None


def test_from_folder_takes_smaller_training_crops_than_the_validation_size(image_folder):
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, augment=BatchAugment(12))
    try:
        assert next(iter(dls.train))[0].shape == (4, 16, 16, 3)  # stored at max(1.25 * 12, 16)
        assert dls.augment(next(iter(dls.train))[0]).shape == (4, 12, 12, 3)
        assert dls.preprocessing.size == 16
    finally:
        dls.close()


def test_the_learner_trains_on_augmented_batches_and_validates_on_whole_images(image_folder):
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=0,
                                       augment=BatchAugment(16, seed=0))
    seen = []

    class Spy(SetupLearnerCB):
        def before_batch(self):
            raw = self.learn.batch[0]
            super().before_batch()
            seen.append((self.learn.training, tuple(raw.shape), tuple(self.learn.batch[0].shape)))

    learn = Learner(simple_cnn(n_classes=3), dls, cross_entropy, lr=0.01, cbs=[Spy("cpu")])
    learn.fit(1)
    dls.close()
    assert {s for s in seen if s[0]} == {(True, (4, 20, 20, 3), (4, 3, 16, 16)), (True, (2, 20, 20, 3), (2, 3, 16, 16))}
    assert all(s[2][2:] == (16, 16) for s in seen if not s[0])


def test_prediction_reads_larger_images_as_the_whole_view():
    from groundup.data.preprocessing import Preprocessing

    pre = Preprocessing([0.5] * 3, [0.25] * 3, size=16)
    xb = known_image(2, 32, 32)
    got = model_input(xb, pre, torch.device("cpu"))
    assert got.shape == (2, 3, 16, 16)
    assert torch.equal(got, model_input(whole_view(xb, 16), pre, torch.device("cpu")))


def test_show_batch_shows_the_augmented_training_batch(image_folder, tmp_path):
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=0, augment=True)
    try:
        path = dls.show_batch(tmp_path / "batch.png")
    finally:
        dls.close()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
