"""Image sources: ADM .npz layout, folders, dataset names, reference batches, and the content-hash cache."""

import numpy as np
import pytest

from mpdit_bench.evaluation import SourceError, evaluate, open_source, write_npz
from mpdit_bench.evaluation.evaluate import parse_metrics, reference_features
from mpdit_bench.validation import ConfigError


def images(n=5, h=8, w=6, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def read_all(src, batch_size=2):
    return np.concatenate(list(src.batches(batch_size)))


def test_npz_roundtrip_in_adm_layout(tmp_path):
    x, y = images(), np.arange(5) % 3
    path = write_npz(tmp_path / "s.npz", x, y)
    with np.load(path) as data:  # what ADM's evaluator reads
        assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == (5, 8, 6, 3)
        assert data["arr_1"].dtype == np.int64 and data["arr_1"].tolist() == y.tolist()
    src = open_source(path)
    assert src.num == 5 and src.labels.tolist() == y.tolist()
    np.testing.assert_array_equal(read_all(src, 2), x)  # streamed batches of 2, 2, 1
    assert [len(b) for b in src.batches(2)] == [2, 2, 1]


def test_greyscale_is_repeated_to_three_channels(tmp_path):
    grey = images(c=1)[..., 0]  # (5, 8, 6)
    path = write_npz(tmp_path / "g.npz", grey)
    with np.load(path) as data:
        assert data["arr_0"].shape == (5, 8, 6, 3) and "arr_1" not in data
    np.savez(tmp_path / "raw.npz", grey)  # a plain (N, H, W) arr_0 written by someone else
    out = read_all(open_source(tmp_path / "raw.npz"))
    assert out.shape == (5, 8, 6, 3) and all((out[..., i] == grey).all() for i in range(3))


def test_compressed_npz_streams_too(tmp_path):
    x = images(7)
    np.savez_compressed(tmp_path / "c.npz", x)
    np.testing.assert_array_equal(read_all(open_source(tmp_path / "c.npz"), 3), x)


def test_bad_inputs_name_the_file_and_key(tmp_path):
    np.savez(tmp_path / "f.npz", images().astype(np.float32))
    with pytest.raises(SourceError, match=r"f\.npz.*arr_0.*uint8"):
        open_source(tmp_path / "f.npz")
    np.savez(tmp_path / "k.npz", other=images())
    with pytest.raises(SourceError, match=r"no key arr_0"):
        open_source(tmp_path / "k.npz")
    np.savez(tmp_path / "l.npz", images(), np.zeros(4))
    with pytest.raises(SourceError, match=r"arr_1"):
        open_source(tmp_path / "l.npz")
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "missing.npz")
    with pytest.raises(SourceError, match="allowed: fashion-mnist:train"):
        open_source("fashion-mnist:val")
    with pytest.raises(SourceError, match="positive integer"):
        open_source("fashion-mnist:test:abc")


def test_metrics_flags_resolve_aliases_and_refuse_unknown_words():
    assert parse_metrics("fid, precision,PREC,proxy") == ("fid", "prec", "proxy")
    assert parse_metrics(["recall", "precision"]) == ("recall", "prec")
    with pytest.raises(ConfigError, match=r"'--metrics' = 'fdd'.*allowed: fid, sfid, is, prec, recall, kid, proxy"):
        parse_metrics("fid,fdd")
    with pytest.raises(ConfigError, match="'--metrics'"):
        parse_metrics(" , ")


def test_reference_batch_with_statistics(tmp_path):
    rng = np.random.default_rng(1)
    mu, sigma = rng.normal(size=2048), np.eye(2048)
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, mu_s=np.zeros(2023), sigma_s=np.eye(2023))
    src = open_source(tmp_path / "ref.npz")
    assert src.num == 0 and set(src.stats) == {"mu", "sigma", "mu_s", "sigma_s"}
    np.testing.assert_array_equal(src.stats["mu"], mu)
    np.savez(tmp_path / "both.npz", images(), mu=mu, sigma=sigma)  # ADM's: images for precision/recall too
    both = open_source(tmp_path / "both.npz")
    assert both.num == 5 and "mu_s" not in both.stats
    np.savez(tmp_path / "bad.npz", mu=mu, sigma=np.eye(3))
    with pytest.raises(SourceError, match="sigma"):
        open_source(tmp_path / "bad.npz")


def test_a_reference_batch_of_the_wrong_size_is_refused_when_opened(tmp_path, monkeypatch):
    """Before any sample's features are extracted: the statistics must be Inception's (pool3: 2048; sFID: 2023)."""
    import importlib

    E = importlib.import_module("mpdit_bench.evaluation.evaluate")  # the package exports a function of that name

    def never(*args, **kwargs):
        raise AssertionError("features extracted before the reference was checked")

    monkeypatch.setattr(E, "extract", never)
    write_npz(tmp_path / "s.npz", images())
    good = {"mu": np.zeros(2048), "sigma": np.eye(2048)}
    for name, arrays, says in (
            ("mu10", {"mu": np.zeros(10), "sigma": np.eye(10)}, r"mu \(10,\) / sigma \(10, 10\).*\(2048,\)"),
            ("sigma", {"mu": np.zeros(2048), "sigma": np.eye(3)}, r"sigma \(3, 3\)"),
            ("mus", {**good, "mu_s": np.zeros(2048), "sigma_s": np.eye(2048)}, r"mu_s \(2048,\).*\(2023,\)"),
            ("half", {**good, "mu_s": np.zeros(2023)}, "mu_s without sigma_s")):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(SourceError, match=says):
            open_source(tmp_path / f"{name}.npz")
        with pytest.raises(SourceError, match=says):
            evaluate(tmp_path / "s.npz", tmp_path / f"{name}.npz", metrics="fid", progress=False)


def test_image_folder(tmp_path):
    from PIL import Image

    x = images(3)
    for i, im in enumerate(x):
        Image.fromarray(im).save(tmp_path / f"{i:03d}.png")
    src = open_source(tmp_path)
    assert src.num == 3
    np.testing.assert_array_equal(read_all(src), x)
    Image.fromarray(images(1, 9, 9)[0]).save(tmp_path / "004.png")
    with pytest.raises(SourceError, match="004.png"):
        read_all(open_source(tmp_path))


def test_fashion_mnist_names():
    from mpdit_bench.data.fashion_mnist import DatasetMissing, load_arrays

    try:
        ref, labels = load_arrays("test")
    except DatasetMissing:
        pytest.skip("dataset-fashion-mnist not installed")
    src = open_source("fashion-mnist:test:7")
    out = read_all(src, 4)
    assert out.shape == (7, 32, 32, 3) and (out[..., 0] == ref[:7]).all() and (out[..., 2] == ref[:7]).all()
    assert src.labels.tolist() == labels[:7].tolist()
    assert src.content_hash() != open_source("fashion-mnist:test:8").content_hash()
    assert src.content_hash() == open_source("fashion-mnist:test:7").content_hash()


def test_content_hash_keys_the_reference_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MPDIT_CACHE", str(tmp_path / "cache"))
    calls = []

    def extractor(batch):  # stands in for Inception: counts the images it sees
        calls.append(len(batch))
        return {"pool3": batch.reshape(len(batch), -1)[:, :4].astype(np.float32)}

    write_npz(tmp_path / "r.npz", images(4))
    first = reference_features(open_source(tmp_path / "r.npz"), "test-kind", extractor, 2, progress=False)
    again = reference_features(open_source(tmp_path / "r.npz"), "test-kind", extractor, 2, progress=False)
    assert not first["cached"] and again["cached"] and sum(calls) == 4
    np.testing.assert_array_equal(first["pool3"], again["pool3"])
    write_npz(tmp_path / "r.npz", images(4, seed=1))  # same path, new content: a miss
    changed = reference_features(open_source(tmp_path / "r.npz"), "test-kind", extractor, 2, progress=False)
    assert not changed["cached"] and sum(calls) == 8
    assert not np.array_equal(changed["pool3"], first["pool3"])
    assert len(list((tmp_path / "cache" / "reference").glob("test-kind-*.npz"))) == 2


def test_workers_that_need_one_reference_at_once_extract_it_once(tmp_path, monkeypatch):
    import threading
    import time

    monkeypatch.setenv("MPDIT_CACHE", str(tmp_path / "cache"))
    calls = []

    def slow_extractor(batch):  # long enough that both callers ask before the first one has finished
        calls.append(len(batch))
        time.sleep(0.3)
        return {"pool3": batch.reshape(len(batch), -1)[:, :4].astype(np.float32)}

    write_npz(tmp_path / "r.npz", images(4))
    results = []

    def worker():
        results.append(reference_features(open_source(tmp_path / "r.npz"), "k", slow_extractor, 2, progress=False))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(calls) == 4  # the second caller waited on the lock, then read the cache
    assert sorted(r["cached"] for r in results) == [False, True]
    np.testing.assert_array_equal(results[0]["pool3"], results[1]["pool3"])


def test_evaluate_checks_inputs_before_compute(tmp_path):
    write_npz(tmp_path / "s.npz", images())
    with pytest.raises(ConfigError, match="'--ref' = None.*fid need a reference"):
        evaluate(tmp_path / "s.npz", None, metrics="fid", progress=False)
    for flag, kwargs in (("--batch-size", {"batch_size": 0}), ("--bootstrap", {"bootstrap": 1}),
                         ("fd_method", {"fd_method": "svd"})):  # flags, not sources: a configuration error
        with pytest.raises(ConfigError, match=f"'{flag}'.*allowed"):
            evaluate(tmp_path / "s.npz", tmp_path / "s.npz", metrics="fid", progress=False, **kwargs)
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(SourceError, match="SAMPLES must hold images"):
        evaluate(tmp_path / "stats.npz", tmp_path / "s.npz", metrics="fid", progress=False)
    with pytest.raises(SourceError, match="k=3 needs more than 3"):
        evaluate(tmp_path / "s.npz", "fashion-mnist:test:3", metrics="prec", progress=False)
    write_npz(tmp_path / "lab.npz", images(), np.array([0, 1, 2, 3, 42]))
    with pytest.raises(SourceError, match="arr_1.*0..9"):
        evaluate(tmp_path / "lab.npz", tmp_path / "s.npz", metrics="proxy", progress=False)


def test_npz_images_are_streamed_not_loaded_whole(tmp_path, monkeypatch):
    x, y = images(6), np.arange(6) % 2
    write_npz(tmp_path / "s.npz", x, y)
    real_getitem = np.lib.npyio.NpzFile.__getitem__

    def guarded(self, key):
        assert key != "arr_0", "arr_0 must be read in chunks, never as a whole array"
        return real_getitem(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", guarded)
    src = open_source(tmp_path / "s.npz")
    np.testing.assert_array_equal(read_all(src, 4), x)
    assert src.labels.tolist() == y.tolist()
