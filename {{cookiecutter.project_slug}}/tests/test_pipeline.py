"""Image files streamed from disk: listed not decoded, seeded epochs, resume, caches, bad files."""

import numpy as np
import pytest
from PIL import Image

# Image work the other bakes need not repeat: it writes and decodes image files.
pytestmark = pytest.mark.slow


def _folder(root, classes=("cat", "dog", "owl"), per_class=12, size=(20, 16)):
    """Small RGB images of mixed sizes; each class has a bright band of its own."""
    rng = np.random.default_rng(1)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            height, width = size[0] + i % 3, size[1] + i % 2  # sizes differ: all get resized
            pixels = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
            pixels[c * 5 : c * 5 + 5] = 250
            Image.fromarray(pixels).save(
                root / name / f"{i}.jpg" if i % 2 else root / name / f"{i}.png"
            )
    return root


def _epoch(dataset, steps):
    xs, ys = [], []
    for x, y in dataset.take(steps):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture
def folder_data(project, make_config, tmp_path):
    root = _folder(tmp_path / "pics")
    config = make_config(f"data.source={root}", "data.image_size=[16,16]")
    return config, project.data.load(config)


def test_image_files_are_listed_not_decoded(project, folder_data):
    _, data = folder_data
    assert data.streamed and isinstance(data.train.x, project.data.ImageFiles)
    assert data.input_shape == (16, 16, 3)
    assert len(data.train.y) + len(data.val.y) + len(data.test.y) == 36
    assert data.value_range == (0.0, 255.0)
    # Indexing decodes just those files, through the pipeline's decoder.
    pixels = data.val.x[np.array([0, 1])]
    assert pixels.shape == (2, 16, 16, 3) and pixels.dtype == np.uint8
    assert 0 <= pixels.min() and pixels.max() <= 255


def test_statistics_come_from_a_sample_and_match_the_decoded_training_split(
    project, make_config, folder_data
):
    config, data = folder_data
    every = data.train.x[:]  # 24 images: the exact per-channel statistics
    np.testing.assert_allclose(data.mean, every.mean(axis=(0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(data.std, every.std(axis=(0, 1, 2)), rtol=1e-4)
    sampled = project.data.input_statistics(data, sample=10, seed=0)
    assert not np.allclose(sampled[0], data.mean, rtol=1e-6)  # 10 of 24: close, not equal
    np.testing.assert_allclose(sampled[0], data.mean, rtol=0.25)


def test_a_file_batch_is_the_decoded_files_normalized(project, folder_data):
    _, data = folder_data
    x, y = next(iter(project.pipeline.make_dataset(data, data.test, 32, shuffle=False)))
    np.testing.assert_allclose(x.numpy(), data.normalize(data.test.x[:]), atol=1e-5)
    np.testing.assert_array_equal(y.numpy(), data.test.y)
    raw, _ = next(iter(project.pipeline.make_dataset(data, data.test, 32, shuffle=False, raw=True)))
    np.testing.assert_array_equal(raw.numpy(), data.test.x[:])


def test_each_epoch_is_a_seeded_permutation_and_a_resumed_stream_goes_on(project, folder_data):
    _, data = folder_data
    make = project.pipeline.make_dataset
    steps = project.pipeline.steps_per_epoch(data.train, 10)  # 24 = 10 + 10 + 4
    stream = _epoch(make(data, data.train, 10, shuffle=True, seed=3), 3 * steps)
    again = _epoch(make(data, data.train, 10, shuffle=True, seed=3), 3 * steps)
    np.testing.assert_array_equal(stream[0], again[0])
    n = len(data.train.y)
    epochs = [stream[1][e * n : (e + 1) * n] for e in range(3)]
    for labels in epochs:  # every file once per epoch
        np.testing.assert_array_equal(np.sort(labels), np.sort(data.train.y))
    assert not all(np.array_equal(epochs[0], other) for other in epochs[1:])
    resumed = _epoch(make(data, data.train, 10, shuffle=True, seed=3, first_epoch=2), steps)
    np.testing.assert_array_equal(resumed[0], stream[0][2 * n :])


@pytest.mark.parametrize("cache", ["memory", "folder"])
def test_a_cache_serves_the_same_images_every_epoch(
    project, folder_data, make_config, tmp_path, cache
):
    _, data = folder_data
    project.seeding.seed_everything(make_config("seed=0"))  # as train does: seed 0, determinism
    where = str(tmp_path / "cache") if cache == "folder" else "memory"
    if cache == "folder":  # a lock left by a killed run must not stop this one
        (tmp_path / "cache").mkdir()
    stream = project.pipeline.make_dataset(data, data.train, 8, shuffle=True, seed=0, cache=where)
    steps = project.pipeline.steps_per_epoch(data.train, 8)
    x, y = _epoch(stream, 2 * steps)
    n = len(data.train.y)
    plain = data.normalize(data.train.x[:])
    for e in range(2):  # each epoch: every training image once, in a seeded order
        got = x[e * n : (e + 1) * n]
        order = [int(np.argmin(np.abs(plain - image).sum(axis=(1, 2, 3)))) for image in got]
        assert sorted(order) == list(range(n))
        np.testing.assert_allclose(got, plain[order], atol=1e-5)
    assert not np.array_equal(x[:n], x[n:])
    if cache == "folder":
        assert any((tmp_path / "cache").glob("images-*"))


def test_a_stale_cache_lock_is_removed(project, folder_data, tmp_path):
    _, data = folder_data
    folder = tmp_path / "cache"
    prefix = project.pipeline._cache_file(str(folder), data.train.x)
    stale = folder / f"{prefix.rsplit('/', 1)[-1]}_0.lockfile"
    stale.write_text("")
    project.pipeline._cache_file(str(folder), data.train.x)
    assert not stale.exists()


def test_a_csv_lists_image_files_relative_to_itself(project, make_config, tmp_path):
    root = _folder(tmp_path / "pics")
    lines = ["file,animal"] + [
        f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(root.rglob("*.*"))
    ]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    config = make_config(
        f"data.source={tmp_path / 'labels.csv'}",
        "data.path_column=file",
        "data.label_column=animal",
        "data.image_size=[16,16]",
    )
    data = project.data.load(config)
    assert data.streamed and data.class_names == ["cat", "dog", "owl"]
    assert all(str(tmp_path / "pics") in path for path in data.train.ids)
    lines.append("pics/cat/gone.png,cat")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(project.errors.UsageError, match=r"lists 1 files that do not exist.*gone"):
        project.data.load(config)


def test_a_corrupt_image_is_skipped_in_training_and_named_where_every_file_counts(
    project, folder_data
):
    _, data = folder_data
    broken = data.train.ids[0]
    with open(broken, "wb") as handle:
        handle.write(b"not an image at all")
    steps = project.pipeline.steps_per_epoch(data.train, 64)
    stream = project.pipeline.make_dataset(data, data.train, 64, shuffle=True, seed=0)
    _, labels = _epoch(stream, steps)
    assert len(labels) == len(data.train.y) - 1  # skipped, with a warning in the log
    with pytest.raises(project.errors.UsageError, match=r"cannot decode image .*" + broken[-6:]):
        project.images.decode_files(data.train.x)
