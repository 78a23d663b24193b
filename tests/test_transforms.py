"""Augmentation transforms: exact identities, quarter turns, flips, elastic, joint masks/boxes, seeds, CLI specs."""

from __future__ import annotations

import numpy as np
import pytest

from striate.data import transforms as T


def _images(n=3, c=2, h=9, w=9, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)


# --------------------------------------------------------------------------- identities


IDENTITIES = [
    T.Affine(),
    T.Affine(angle=0, scale=1, shear=(0, 0), translate=(0, 0)),
    T.RandomAffine(),
    T.RandomRotation(0),
    T.RandomScale((1.0, 1.0)),
    T.RandomTranslate(0),
    T.RandomShear(0),
    T.RandomShift(0),
    T.RandomCrop(padding=0),
    T.RandomHorizontalFlip(0.0),
    T.RandomVerticalFlip(0.0),
    T.RandomTranspose(0.0),
    T.ElasticDeformation(alpha=0.0, sigma=4.0),
    T.RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0)),
    T.RandomBrightness(0),
    T.RandomContrast(0),
    T.Compose([T.RandomRotation(0), T.ElasticDeformation(0), T.RandomScale(0), T.RandomHorizontalFlip(0)]),
]


@pytest.mark.parametrize("t", IDENTITIES, ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("boundary", ["zeros", "edge"])
def test_identity_parameters_return_the_input_exactly(t, dtype, boundary):
    if hasattr(t, "boundary") and t.geometric:
        t.boundary = boundary
    x = _images(dtype=dtype)
    mask = np.random.default_rng(1).integers(0, 5, (3, 9, 9))
    boxes = np.array([[[1.0, 2, 5, 7]], [[0, 0, 9, 9]], [[3.5, 1.25, 4.5, 8]]])
    before = x.copy()
    out, m, b = t.apply(x, np.random.default_rng(0), masks=mask, boxes=boxes)
    assert out.dtype == dtype and out is not x
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(m, mask)
    np.testing.assert_array_equal(b, boxes)
    np.testing.assert_array_equal(x, before)  # input untouched


def test_identity_through_the_resampling_path_is_exact():
    # a full turn is not short-circuited: it goes through the gather and snaps back exactly
    x = _images(h=8, w=11)
    np.testing.assert_array_equal(T.rotate(x, 360), x)
    np.testing.assert_array_equal(T.Compose([T.RandomHorizontalFlip(1.0), T.Affine(translate=(0.5, 0)),
                                             T.Affine(translate=(-0.5, 0)), T.RandomHorizontalFlip(1.0)])(x), x)


# --------------------------------------------------------------------------- exact geometry


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("k", [1, 2, 3, -1])
def test_rotation_by_quarter_turns_equals_rot90(size, k):
    x = _images(h=size, w=size)
    np.testing.assert_array_equal(T.rotate(x, 90 * k), np.rot90(x, k, axes=(-2, -1)))
    mask = np.random.default_rng(2).integers(0, 9, (3, size, size))
    _, m, _ = T.rotate(x, 90 * k, masks=mask, boxes=np.zeros((3, 4)))
    np.testing.assert_array_equal(m, np.rot90(mask, k, axes=(-2, -1)))


def test_flips_and_transpose_are_exact_and_twice_is_identity():
    x = _images(h=6, w=9)
    np.testing.assert_array_equal(T.hflip(x), x[..., ::-1])
    np.testing.assert_array_equal(T.vflip(x), x[..., ::-1, :])
    np.testing.assert_array_equal(T.transpose(x), x.swapaxes(-1, -2))
    for f in (T.hflip, T.vflip, T.transpose):
        np.testing.assert_array_equal(f(f(x)), x)
    # random flips with the same generator state pick the same images, so twice is the identity too
    for cls in (T.RandomHorizontalFlip, T.RandomVerticalFlip):
        t = cls(0.5)
        y = t(t(x, np.random.default_rng(4)), np.random.default_rng(4))
        np.testing.assert_array_equal(y, x)
    sq = _images(n=16, h=7, w=7)
    t = T.RandomTranspose(0.5)
    once = t(sq, np.random.default_rng(3))
    flipped = np.array([not np.array_equal(a, b) for a, b in zip(once, sq)])
    assert 0 < flipped.sum() < 16
    np.testing.assert_array_equal(t(once, np.random.default_rng(3)), sq)


def test_random_transpose_of_mixed_non_square_batch_is_refused():
    with pytest.raises(ValueError, match="square"):
        T.RandomTranspose(0.5)(_images(n=20, h=5, w=7), np.random.default_rng(0))
    assert T.RandomTranspose(1.0)(_images(h=5, w=7)).shape == (3, 2, 7, 5)


def test_integer_translation_moves_pixels_and_fills_per_boundary():
    x = _images(n=1, c=1, h=5, w=6)
    y = T.affine(x, translate=(2, -1))  # content moves 2 right, 1 up
    np.testing.assert_array_equal(y[0, 0, :4, 2:], x[0, 0, 1:, :4])
    assert np.all(y[0, 0, :, :2] == 0) and np.all(y[0, 0, 4, :] == 0)
    e = T.affine(x, translate=(2, -1), boundary="edge")
    np.testing.assert_array_equal(e[0, 0, :4, 0], x[0, 0, 1:, 0])
    f = T.affine(x, translate=(2, -1), fill=7.0)
    assert np.all(f[0, 0, :, :2] == 7.0)


def test_random_shift_transform_equals_the_fast_original():
    x = _images(n=10, h=12, w=12)
    for k in (0, 1, 3):
        np.testing.assert_array_equal(T.RandomShift(k)(x, np.random.default_rng(5)),
                                      T.random_shift(x, np.random.default_rng(5), k))


def _naive_bilinear(img, gx, gy, boundary, fill):
    n, c, h, w = img.shape
    out = np.zeros((n, c) + gx.shape[1:])
    for s in range(n):
        for i in range(gx.shape[1]):
            for j in range(gx.shape[2]):
                x, y = gx[s, i, j], gy[s, i, j]
                if boundary == "edge":
                    x, y = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
                x0, y0 = int(np.floor(x)), int(np.floor(y))
                for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                    for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                        v = img[s, :, yy, xx] if 0 <= yy < h and 0 <= xx < w else fill
                        out[s, :, i, j] += wy * wx * v
    return out


@pytest.mark.parametrize("boundary,fill", [("zeros", 0.0), ("zeros", -1.5), ("edge", 0.0)])
def test_bilinear_sampling_matches_a_naive_loop(boundary, fill):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((2, 3, 5, 7))
    gx = rng.uniform(-2, 8, (2, 4, 6))
    gy = rng.uniform(-2, 6, (2, 4, 6))
    got = T.sample_bilinear(img, gx, gy, boundary, fill)
    np.testing.assert_allclose(got, _naive_bilinear(img, gx, gy, boundary, fill), rtol=1e-12, atol=1e-12)


def test_rotation_matches_torch_grid_sample():
    torch = pytest.importorskip("torch")
    x = _images(n=2, c=1, h=9, w=9, dtype=np.float64)
    ours = T.rotate(x, 30)
    a = np.deg2rad(30)
    # output -> source in normalised coordinates (align_corners=True: -1 and 1 are the edge pixel centres)
    theta = torch.tensor([[[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0]]] * 2, dtype=torch.float64)
    grid = torch.nn.functional.affine_grid(theta, (2, 1, 9, 9), align_corners=True)
    ref = torch.nn.functional.grid_sample(torch.from_numpy(x), grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=True).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-10)


# --------------------------------------------------------------------------- elastic


def test_gaussian_smoothing_matrix_is_a_normalised_mirrored_convolution():
    S = T.gaussian_smoothing_matrix(10, 1.5)
    np.testing.assert_allclose(S.sum(axis=1), 1.0)
    v = np.random.default_rng(0).standard_normal(10)
    r = int(4 * 1.5 + 0.5)
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / 1.5) ** 2)
    ref = np.convolve(np.pad(v, r, mode="symmetric"), g / g.sum(), mode="valid")
    np.testing.assert_allclose(S @ v, ref, atol=1e-12)
    np.testing.assert_array_equal(T.gaussian_smoothing_matrix(5, 0), np.eye(5))
    assert np.all(np.isfinite(T.gaussian_smoothing_matrix(3, 10.0)))  # kernel wider than the signal


def test_elastic_is_smooth_scaled_and_seeded():
    t = T.ElasticDeformation(alpha=10, sigma=3)
    d1 = t.displacement(2, (20, 20), np.random.default_rng(0))
    d2 = T.ElasticDeformation(alpha=20, sigma=3).displacement(2, (20, 20), np.random.default_rng(0))
    np.testing.assert_allclose(d2, 2 * d1)  # the field is linear in alpha
    raw = np.random.default_rng(0).uniform(-1, 1, (2, 2, 20, 20))
    assert np.abs(np.diff(d1, axis=-1)).mean() < 0.2 * 10 * np.abs(np.diff(raw, axis=-1)).mean()  # smoothed
    x = _images(h=20, w=20)
    np.testing.assert_array_equal(T.elastic(x, np.random.default_rng(1), 0.0), x)
    y = T.elastic(x, np.random.default_rng(1), 10, 3)
    assert not np.array_equal(y, x) and y.shape == x.shape


# --------------------------------------------------------------------------- masks and boxes


def _rect_sample(n=4, h=24, w=20):
    """Images and masks showing one rectangle per image, and the rectangles as boxes."""
    rng = np.random.default_rng(7)
    imgs = np.zeros((n, 1, h, w), np.float32)
    masks = np.zeros((n, h, w), np.int64)
    boxes = np.zeros((n, 1, 4))
    for s in range(n):
        y0, x0 = rng.integers(5, 9), rng.integers(5, 8)
        y1, x1 = y0 + rng.integers(4, 9), x0 + rng.integers(3, 7)
        imgs[s, 0, y0:y1, x0:x1] = 1.0
        masks[s, y0:y1, x0:x1] = s + 1
        boxes[s, 0] = (x0, y0, x1, y1)
    return imgs, masks, boxes


def _bbox(region):
    ys, xs = np.nonzero(region)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)


GEOMETRIC = [
    T.Affine(angle=30),
    T.Affine(angle=-75, boundary="edge"),
    T.Affine(scale=1.3),
    T.Affine(scale=0.7),
    T.Affine(translate=(2.5, -1.5)),
    T.Affine(shear=(15, -10)),
    T.RandomHorizontalFlip(1.0),
    T.RandomVerticalFlip(1.0),
    T.RandomTranspose(1.0),
    T.RandomShift(3),
    T.RandomCrop(size=(18, 16), padding=2),
    T.RandomResizedCrop(size=(16, 16), scale=(0.6, 0.9)),
    T.RandomAffine(degrees=30, scale=(0.8, 1.2), shear=10, translate=2),
    T.ElasticDeformation(alpha=8, sigma=3),
    T.Compose([T.RandomRotation(20), T.ElasticDeformation(6, 3), T.RandomHorizontalFlip(), T.RandomShift(1)]),
]


@pytest.mark.parametrize("t", GEOMETRIC, ids=[f"{k}-{type(t).__name__}" for k, t in enumerate(GEOMETRIC)])
def test_masks_and_boxes_follow_the_image(t):
    imgs, masks, boxes = _rect_sample()
    out, m, b = t.apply(imgs, np.random.default_rng(3), masks=masks, boxes=boxes)
    assert m.dtype == masks.dtype and m.shape == (out.shape[0],) + out.shape[2:] and b.shape == boxes.shape
    elastic = "Elastic" in repr(t)
    for s in range(len(imgs)):
        mask_region = m[s] == s + 1
        assert set(np.unique(m[s])) <= {0, s + 1}
        assert mask_region.sum() >= 4
        # exact link between nearest (mask) and bilinear (image) sampling: a pixel's nearest source
        # neighbour carries at least 1/4 of its bilinear weight
        assert np.all(out[s, 0][mask_region] >= 0.25 - 1e-6)
        assert np.all(mask_region[out[s, 0] > 0.75 + 1e-6])
        if elastic:  # the box is the box around the mask's pixels
            np.testing.assert_array_equal(b[s, 0], _bbox(mask_region))
        else:  # the transformed box holds the centres of the mask's pixels and is at most a pixel off
            mb = _bbox(mask_region)
            assert np.all(b[s, 0, :2] <= mb[:2] + 0.5 + 1e-9) and np.all(b[s, 0, 2:] >= mb[2:] - 0.5 - 1e-9), (b[s, 0], mb)
            assert np.all(np.abs(b[s, 0] - mb) <= 1.0 + 1e-9), (b[s, 0], mb)


def test_box_layouts_and_boxes_leaving_the_image():
    imgs, masks, boxes = _rect_sample(n=2)
    as_list = [boxes[0], np.concatenate([boxes[1], [[0, 0, 2, 2]]])]
    out, _, b = T.Affine(translate=(-30, 0)).apply(imgs, None, boxes=as_list)
    assert isinstance(b, list) and [len(v) for v in b] == [1, 2]
    assert np.all(T.box_area(np.concatenate(b)) == 0)  # everything moved out
    _, _, b2 = T.hflip(imgs, boxes=boxes[:, 0])  # (N, 4)
    np.testing.assert_array_equal(b2[:, [0, 2]], imgs.shape[-1] - boxes[:, 0][:, [2, 0]])
    one, m1, b1 = T.transpose(imgs[0], masks=masks[0], boxes=boxes[0, 0])  # a single image
    assert one.shape == (1, 20, 24)
    np.testing.assert_array_equal(m1, masks[0].T)
    np.testing.assert_array_equal(b1, boxes[0, 0][[1, 0, 3, 2]])


# --------------------------------------------------------------------------- seeds, shapes, dtypes


def test_same_seed_same_output_and_per_image_parameters():
    aug = T.parse_augment("rotate:15,scale:0.1,elastic:34/4,shift:2,hflip")
    x = _images(n=8, c=1, h=28, w=28)
    a = aug(x, np.random.default_rng([0, 5]))
    b = aug(x, np.random.default_rng([0, 5]))
    c = aug(x, np.random.default_rng([0, 6]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    same = np.repeat(x[:1], 8, axis=0)
    out = aug(same, np.random.default_rng(0))
    assert len({out[i].tobytes() for i in range(8)}) == 8  # every image drew its own parameters
    assert a.dtype == np.float32 and a.shape == x.shape


def test_single_image_and_batch_forms():
    x = _images(n=1)
    t = T.RandomAffine(degrees=20, scale=0.1)
    single = t(x[0], np.random.default_rng(0))
    batch = t(x, np.random.default_rng(0))
    assert single.shape == x.shape[1:]
    np.testing.assert_array_equal(single, batch[0])


def test_random_transforms_demand_a_generator():
    with pytest.raises(TypeError, match="Generator"):
        T.RandomRotation(10)(_images())


def test_output_sizes_of_crops():
    x = _images(h=20, w=24)
    assert T.RandomCrop(size=16, padding=0)(x, np.random.default_rng(0)).shape == (3, 2, 16, 16)
    assert T.RandomResizedCrop(size=(12, 10))(x, np.random.default_rng(0)).shape == (3, 2, 12, 10)
    with pytest.raises(ValueError, match="larger than the padded image"):
        T.RandomCrop(size=30, padding=2)(x, np.random.default_rng(0))


def test_brightness_contrast_and_normalize_compose():
    x = np.abs(_images(n=4, c=3, h=5, w=5, dtype=np.float64)) + 0.1
    np.testing.assert_allclose(T.adjust_brightness(x, 1.5), 1.5 * x)
    y = T.adjust_contrast(x, 0.5)
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(y.std(axis=(1, 2, 3)), 0.5 * x.std(axis=(1, 2, 3)))
    norm = T.Normalize([0.5, 0.5, 0.5], [2.0, 2.0, 2.0])
    out = T.Compose([T.RandomBrightness(0.2), T.RandomContrast(0.2), norm])(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32


# --------------------------------------------------------------------------- CLI specs


@pytest.mark.parametrize("spec", [
    "shift:2", "translate:1.5", "rotate:15", "rotate:-5/20", "scale:0.1", "scale:0.8/1.2", "shear:10",
    "elastic:34/4", "elastic:20", "hflip", "vflip:0.3", "transpose", "crop:3", "resized_crop:0.5",
    "resized_crop:0.5/0.9", "brightness:0.2", "contrast:0.3", "rotate:15,scale:0.1,elastic:34/4,shift:2,hflip",
    "rotate:10,border:edge", "shift:2,border:-0.4",
])
def test_every_spec_item_parses_to_a_seeded_batch_transform(spec):
    f = T.parse_augment(spec)
    x = _images(n=5, c=1, h=16, w=16)
    y = f(x, np.random.default_rng([0, 1]))
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_array_equal(y, f(x, np.random.default_rng([0, 1])))


def test_shift_alone_is_the_original_fast_path_and_none_is_none():
    x = _images(n=6)
    np.testing.assert_array_equal(T.parse_augment("shift:2")(x, np.random.default_rng(1)),
                                  T.random_shift(x, np.random.default_rng(1), 2))
    assert T.parse_augment("none") is None and T.parse_augment(None) is None and T.parse_augment("") is None


@pytest.mark.parametrize("spec,pattern", [
    ("spin:3", "unknown augmentation"),
    ("rotate:abc", "needs numbers"),
    ("rotate:1/2/3", "1 to 2 number"),
    ("scale:1.5", "scale"),
    ("shift:-1", "K >= 0"),
    ("hflip:2", r"\[0, 1\]"),
    ("elastic:-3", "alpha"),
    ("border:wobbly", "border"),
    ("rotate:10,,hflip", "empty item"),
])
def test_bad_specs_raise_clear_errors(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        T.parse_augment(spec)
