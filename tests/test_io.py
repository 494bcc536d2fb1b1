"""Model files: round trips, custom base functions, bad files, atomic writes, no stray files."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

import kanlab.io
from kanlab import KAN, create_dataset
from kanlab.io import FORMAT, FORMAT_VERSION



def _f(x):
    return torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2


def _dataset(dtype=None, n=64):
    return create_dataset(_f, n_var=2, train_num=n, test_num=n // 2, seed=0, dtype=dtype)


def _trained(**kw):
    """A small KAN trained a few LBFGS steps, with a grid update (non-uniform knots)."""
    dtype = kw.get("dtype")
    model = KAN(width=kw.pop("width", [2, 3, 1]), grid=kw.pop("grid", 3), seed=0, **kw)
    model.fit(_dataset(dtype), opt="LBFGS", steps=3, update_grid=True, grid_update_num=1,
              stop_grid_update_step=2, progress=False)
    return model


def _probe(model):
    gen = torch.Generator().manual_seed(123)
    return torch.rand(50, model.width_in[0], generator=gen, dtype=model.dtype) * 2.4 - 1.2


def _assert_same_model(a: KAN, b: KAN):
    assert type(b) is KAN
    assert a.config() == b.config()
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key
    assert {n: p.requires_grad for n, p in a.named_parameters()} == {
        n: p.requires_grad for n, p in b.named_parameters()
    }
    x = _probe(a)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert torch.all(torch.isfinite(ya))
    assert torch.equal(ya, yb)


# ------------------------------------------------------------------ round trips
def test_round_trip_trained_model(tmp_path):
    model = _trained()
    # the grid update made the knots non-uniform: the file must carry them, not rebuild them
    assert not model.act_fun[0].is_uniform()
    path = tmp_path / "m.kan"
    model.save(path)
    loaded = KAN.load(path)
    _assert_same_model(model, loaded)
    assert loaded.width == [[2, 0], [3, 0], [1, 0]]
    assert loaded.config()["grid"] == [3, 3]
    assert loaded.config()["k"] == [3, 3]
    assert loaded.config()["base_fun"] == "silu"
    assert loaded.config()["bias"] is True
    assert torch.equal(loaded.act_fun[0].grid, model.act_fun[0].grid)
    # a loaded model can go on training
    h = loaded.fit(_dataset(), steps=1, update_grid=False, progress=False)
    assert len(h["train_loss"]) == 1


def test_round_trip_accepts_str_path_and_map_location(tmp_path):
    model = _trained()
    path = str(tmp_path / "m.kan")
    model.save(path)
    loaded = KAN.load(path, map_location="cpu")
    _assert_same_model(model, loaded)
    assert loaded.device.type == "cpu"


@pytest.mark.parametrize(
    "kw",
    [
        dict(dtype=torch.float64),
        dict(bias=False),
        dict(base_fun="identity"),
        dict(base_fun="zero"),
        dict(sb_trainable=False, sp_trainable=False),
        dict(width=[2, 4, 2, 1], grid=4, k=2),
    ],
    ids=["float64", "no-bias", "identity", "zero", "frozen-scales", "deeper"],
)
def test_round_trip_variants(tmp_path, kw):
    model = _trained(**kw)
    if "dtype" in kw:
        assert model.dtype == torch.float64
    path = tmp_path / "m.kan"
    model.save(path)
    loaded = KAN.load(path)
    _assert_same_model(model, loaded)
    cfg = loaded.config()
    if "dtype" in kw:
        assert loaded.dtype == torch.float64 and cfg["dtype"] == "float64"
    if kw.get("bias") is False:
        assert cfg["bias"] is False
        assert all(b is None for b in loaded.node_bias)
    if "base_fun" in kw:
        assert cfg["base_fun"] == kw["base_fun"]
    if kw.get("sb_trainable") is False:
        for layer in loaded.act_fun:
            assert layer.scale_base.requires_grad is False
            assert layer.scale_sp.requires_grad is False
            assert layer.coef.requires_grad is True


def test_manually_frozen_parameter_survives(tmp_path):
    model = _trained()
    model.act_fun[1].coef.requires_grad_(False)
    model.save(tmp_path / "m.kan")
    loaded = KAN.load(tmp_path / "m.kan")
    assert loaded.act_fun[1].coef.requires_grad is False
    assert loaded.act_fun[0].coef.requires_grad is True
    _assert_same_model(model, loaded)


def test_round_trip_after_refine(tmp_path):
    model = _trained()
    fine = model.refine(5)
    assert fine.config()["grid"] == [5, 5]
    fine.save(tmp_path / "fine.kan")
    loaded = KAN.load(tmp_path / "fine.kan")
    _assert_same_model(fine, loaded)
    assert [layer.num for layer in loaded.act_fun] == [5, 5]


def test_file_loads_with_weights_only(tmp_path):
    model = _trained()
    path = tmp_path / "m.kan"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == FORMAT
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["config"] == model.config()
    for key, value in model.state_dict().items():
        assert torch.equal(payload["state_dict"][key], value)


# ------------------------------------------------------------- custom base_fun
def _my_base(x):
    return torch.tanh(x) * 0.5 + 0.1 * x


def test_custom_base_fun(tmp_path):
    model = _trained(base_fun=_my_base)
    assert model.config()["base_fun"] == "custom"
    path = tmp_path / "custom.kan"
    model.save(path)
    assert path.is_file()
    with pytest.raises(ValueError, match="base_fun"):
        KAN.load(path)
    loaded = KAN.load(path, base_fun=_my_base)
    _assert_same_model(model, loaded)
    assert loaded.base_fun is _my_base


def test_custom_base_fun_lambda_is_not_pickled(tmp_path):
    # a lambda cannot be pickled: saving must still work (the file holds weights only)
    fn = lambda x: torch.sin(x)  # noqa: E731
    model = KAN(width=[2, 2, 1], grid=3, base_fun=fn, seed=0)
    model.save(tmp_path / "lam.kan")
    loaded = KAN.load(tmp_path / "lam.kan", base_fun=fn)
    _assert_same_model(model, loaded)


# ------------------------------------------------------------------ bad files
def _good_file(tmp_path):
    path = tmp_path / "good.kan"
    KAN(width=[2, 3, 1], grid=3, seed=0).save(path)
    return path


def test_corrupt_file(tmp_path):
    path = tmp_path / "random.kan"
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(ValueError, match="not a readable kanlab model file"):
        KAN.load(path)


def test_truncated_file(tmp_path):
    data = _good_file(tmp_path).read_bytes()
    path = tmp_path / "half.kan"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt, truncated"):
        KAN.load(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.kan"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable kanlab model file"):
        KAN.load(path)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(ValueError, match="not a kanlab model file"):
        KAN.load(path)


def test_foreign_tensor_file(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="not a kanlab model file"):
        KAN.load(path)


class _Evil:
    """Unpickling this calls open(marker, 'w'), i.e. creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_with_code_is_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.kan"
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": _Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)
    assert not marker.exists()
    with pytest.raises(ValueError, match="not a readable kanlab model file"):
        KAN.load(path)
    assert not marker.exists()


def test_newer_format_version(tmp_path):
    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    path = tmp_path / "future.kan"
    torch.save({"format": FORMAT, "format_version": 999, "config": model.config(),
                "state_dict": model.state_dict(), "trainable": {}}, path)
    with pytest.raises(ValueError, match=r"format 999.*upgrade kanlab"):
        KAN.load(path)


def test_damaged_state_dict(tmp_path):
    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    state = dict(model.state_dict())
    state.pop("act_fun.0.coef")
    path = tmp_path / "damaged.kan"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config(),
                "state_dict": state, "trainable": {}}, path)
    with pytest.raises(ValueError, match="does not match its config"):
        KAN.load(path)


def test_invalid_config_in_file(tmp_path):
    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    cfg = model.config()
    cfg["k"] = [0, 0]
    path = tmp_path / "badcfg.kan"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg,
                "state_dict": model.state_dict(), "trainable": {}}, path)
    with pytest.raises(ValueError, match="invalid config"):
        KAN.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        KAN.load(tmp_path / "nope.kan")


def test_load_directory(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        KAN.load(tmp_path)


def test_save_into_missing_folder(tmp_path):
    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    with pytest.raises(ValueError, match="does not exist"):
        model.save(tmp_path / "no" / "such" / "m.kan")
    assert list(tmp_path.iterdir()) == []


def test_save_to_directory(tmp_path):
    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="folder"):
        model.save(tmp_path / "d")
    assert list((tmp_path / "d").iterdir()) == []


# --------------------------------------------------------------- atomic writes
def test_save_over_existing_file_replaces_it(tmp_path):
    path = tmp_path / "m.kan"
    old = KAN(width=[2, 3, 1], grid=3, seed=0)
    old.save(path)
    new = _trained()
    new.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.kan"]
    _assert_same_model(new, KAN.load(path))


def test_crash_while_saving_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.kan"
    old = KAN(width=[2, 3, 1], grid=3, seed=0)
    old.save(path)
    before = path.read_bytes()

    calls = []
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        calls.append(f)
        f.write(b"PK\x03\x04 partial garbage " * 64)  # some bytes hit the disk ...
        raise OSError("disk full (simulated)")  # ... then the write dies

    monkeypatch.setattr(kanlab.io.torch, "save", crashing_save)
    with pytest.raises(OSError, match="simulated"):
        _trained().save(path)
    monkeypatch.setattr(kanlab.io.torch, "save", real_save)

    assert calls, "kanlab.io did not call torch.save"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.kan"]  # no temporary left
    _assert_same_model(old, KAN.load(path))


def test_crash_on_new_file_leaves_nothing(tmp_path, monkeypatch):
    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"x" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(kanlab.io.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        KAN(width=[2, 3, 1], grid=3, seed=0).save(tmp_path / "m.kan")
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------- no stray files
def test_nothing_written_outside_requested_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = _dataset()
    model = KAN(width=[2, 3, 1], grid=3, seed=0, auto_save=True, ckpt_path="./model")
    model.fit(ds, steps=2, lamb=0.01, progress=False)
    model.fit(ds, opt="Adam", steps=2, lr=0.01, batch=16, progress=False)
    fine = model.refine(5)
    fine.update_grid_from_samples(ds["train_input"])
    fine.evaluate(ds)
    model.get_act(ds["train_input"])
    assert os.listdir(tmp_path) == []
    fine.save("only_this.kan")
    assert os.listdir(tmp_path) == ["only_this.kan"]


# ------------------------------------------------------------ malformed payloads
def _payload(model, **override):
    base = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config(),
            "state_dict": model.state_dict(), "trainable": {}}
    base.update(override)
    return base


@pytest.mark.parametrize(
    "override, match",
    [
        pytest.param(dict(config=[1, 2]), "config", id="config-list"),
        pytest.param(dict(config="abc"), "config", id="config-str"),
        pytest.param(dict(trainable=[1]), "trainable", id="trainable-list"),
        pytest.param(dict(state_dict=[1]), "state_dict", id="state_dict-list"),
        pytest.param(dict(config={"width": [2, 3, 1], "bogus": 1}), "invalid config", id="config-extra-key"),
        pytest.param(dict(format_version="1"), "format", id="version-str"),
        pytest.param(dict(format="other.Model"), "not a kanlab model file", id="other-format"),
    ],
)
def test_malformed_payload(tmp_path, override, match):
    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    path = tmp_path / "bad.kan"
    torch.save(_payload(model, **override), path)
    with pytest.raises(ValueError, match=match):
        KAN.load(path)


def test_state_dict_entry_of_wrong_shape(tmp_path):
    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    state = dict(model.state_dict())
    state["act_fun.0.coef"] = torch.zeros(7)
    torch.save(_payload(model, state_dict=state), tmp_path / "bad.kan")
    with pytest.raises(ValueError, match="does not match its config"):
        KAN.load(tmp_path / "bad.kan")


# ------------------------------------------------------------ saving edge cases
def test_save_under_a_regular_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="not a folder|does not exist|folder"):
        KAN(width=[2, 3, 1], grid=3, seed=0).save(tmp_path / "file.txt" / "m.kan")


def test_save_with_long_but_valid_file_name(tmp_path):
    name = "a" * 247 + ".kan"  # 251 bytes: a valid file name on every common file system
    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    model.save(tmp_path / name)
    _assert_same_model(model, KAN.load(tmp_path / name))
    assert os.listdir(tmp_path) == [name]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_file_permissions_follow_umask(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "m.kan"
    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    model.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o640)
    model.save(path)  # overwriting keeps the file's existing mode
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_load_refuses_damaged_or_crafted_tensors(tmp_path):
    """Checksums, NaN weights, wrong dtypes and zero-stride tensors are refused on load."""
    import pytest
    import torch

    from kanlab import KAN

    model = KAN(width=[2, 3, 1], grid=5, k=3, seed=0)
    path = tmp_path / "m.kan"
    model.save(path)
    x = torch.rand(8, 2)
    torch.testing.assert_close(KAN.load(path)(x), model(x))

    def rewrite(edit, name):
        payload = torch.load(path, weights_only=True)
        edit(payload)
        out = tmp_path / name
        torch.save(payload, out)
        return out

    def change_weight(p):
        p["state_dict"]["act_fun.0.coef"][0, 0, 0] += 0.25

    with pytest.raises(ValueError, match="checksum"):
        KAN.load(rewrite(change_weight, "flip.kan"))

    def nan_weight(p):
        p["state_dict"]["act_fun.0.coef"][0, 0, 0] = float("nan")
        p.pop("checksum")

    with pytest.raises(ValueError, match="NaN or Inf"):
        KAN.load(rewrite(nan_weight, "nan.kan"))

    def wrong_dtype(p):
        p["state_dict"]["act_fun.0.coef"] = p["state_dict"]["act_fun.0.coef"].double()

    with pytest.raises(ValueError, match="is float64 but the model is float32"):
        KAN.load(rewrite(wrong_dtype, "dtype.kan"))

    def zero_stride(p):
        g = p["state_dict"]["act_fun.0.grid"]
        p["state_dict"]["act_fun.0.grid"] = g[:, :1].expand_as(g)

    with pytest.raises(ValueError, match="zero-stride"):
        KAN.load(rewrite(zero_stride, "stride.kan"))

    def old_file(p):  # files written before checksums existed still load
        p.pop("checksum")

    torch.testing.assert_close(KAN.load(rewrite(old_file, "old.kan"))(x), model(x))


def test_model_saved_on_a_gpu_loads_on_a_cpu(tmp_path):
    """A file whose tensors claim a CUDA device (as one saved on a GPU does) loads onto the
    CPU of a machine without CUDA, through KAN.load and the run folder commands."""
    from unittest import mock

    model = KAN(width=[2, 3, 1], seed=0)
    path = tmp_path / "gpu.kan"
    with mock.patch("torch.serialization.location_tag", lambda storage: "cuda:0"):
        model.save(path)
    if not torch.cuda.is_available():  # the file really claims CUDA
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    loaded = KAN.load(path)
    x = torch.rand(7, 2)
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_save_removes_temporary_files_of_killed_writers(tmp_path):
    """A save killed outright (kill -9) leaves its temporary file; the next write in that folder
    removes it, and leaves those of writers still running alone."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".model.kan.{dead_pid}.abc123.tmp"
    live = tmp_path / f".model.kan.{os.getpid()}.def456.tmp"
    other = tmp_path / ".notes.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    KAN(width=[2, 1], seed=0).save(tmp_path / "model.kan")
    assert not stale.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".notes.tmp", live.name, "model.kan"])
