"""`emogrid train` on tiny random models: every family x method, determinism, failures, resume."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest_train import cell_spec

from emogrid.errors import CellError, NaNLossError
from emogrid.models.devices import cpu_threads
from emogrid.study.grid import config_hash
from emogrid.training import cell_files as results
from emogrid.training import train, write
from emogrid.training.failures import describe_failure
from emogrid.training.provenance import now

FAMILIES = ("llama", "qwen2", "gpt2", "gemma3", "bert")
METHODS = (("full", "attention"), ("lora", "attention"), ("lora", "all-linear"), ("qlora", "attention"),
           ("ia3", "attention"), ("loraplus", "attention"), ("dora", "attention"), ("adalora", "attention"))
METRIC_KEYS = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
               "recall_weighted", "f1_weighted", "n", "labels", "per_class", "confusion_matrix"}
EFFICIENCY_KEYS = {"trainable_params", "total_params", "trainable_percent", "train_seconds", "eval_seconds",
                   "checkpoint_seconds", "train_loop_seconds",
                   "peak_memory_mb", "peak_memory_kind", "train_samples_per_second", "train_tokens_per_second",
                   "epochs_run", "best_step", "optimizer_steps", "batch_size", "grad_accum"}
PROVENANCE_KEYS = {"versions", "device", "precision", "git_commit", "config_hash", "data_checksum", "hostname",
                   "started", "finished"}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here: one torch thread (conftest_train.one_torch_thread)."""


def hashed(spec: dict) -> dict:
    spec["config_hash"] = config_hash(spec)
    return spec


def run_cli(spec: dict, data: Path, out: Path, attempt: int = 1) -> int:
    return train.run(argparse.Namespace(spec=json.dumps(spec), data=str(data), out=str(out), attempt=attempt))


def check_metrics_file(out: Path, spec: dict) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "ok" and m["cell"] == spec["cell"] and m["cell_id"] == spec["cell_id"]
    for split in ("val", "test"):
        assert METRIC_KEYS <= set(m[split]), split
        assert 0.0 <= m[split]["accuracy"] <= 1.0
        assert sum(map(sum, m[split]["confusion_matrix"])) == m[split]["n"]
    assert EFFICIENCY_KEYS <= set(m["efficiency"]) and PROVENANCE_KEYS <= set(m["provenance"])
    assert m["provenance"]["config_hash"] == spec["config_hash"]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert {p["split"] for p in preds} == {"val", "test"}
    assert len(preds) == m["val"]["n"] + m["test"]["n"]
    assert all(abs(sum(p["probs"]) - 1) < 1e-3 and len(p["pred"]) == 1 for p in preds)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in row for row in log) and any("eval" in row for row in log)
    assert not (out / ".checkpoint").exists() and not (out / "failure.json").exists()
    # the contract every reader checks: schema, cell id, config hash
    assert results.problems(m, "metrics", cell_id=spec["cell_id"], config_hash=spec["config_hash"]) == []
    return m


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method,targets", METHODS, ids=[f"{m}-{t}" for m, t in METHODS])
def test_every_family_and_method(tiny_models, tiny_subset, tmp_path, family, method, targets):
    spec = hashed(cell_spec(tiny_models[family], method, targets))
    seen = {}

    def on_model(model):
        seen["model"], seen["before"] = model, _snapshot(model)
        seen["trainable"] = {n for n, p in model.named_parameters() if p.requires_grad}

    train.run_cell(spec, tiny_subset, tmp_path, {"batch_size": 8, "grad_accum": 1}, now(), on_model=on_model)
    m = check_metrics_file(tmp_path, spec)
    model, before, trainable = seen["model"], seen["before"], seen["trainable"]
    after = dict(model.named_parameters())

    # Reported count == peft's own count (or every parameter for full fine-tuning).
    if method == "full":
        expected = sum(p.numel() for p in model.parameters())
        assert m["efficiency"]["trainable_params"] == m["efficiency"]["total_params"] == expected
    else:
        assert (m["efficiency"]["trainable_params"], m["efficiency"]["total_params"]) == \
            tuple(model.get_nb_trainable_parameters())
        assert any("modules_to_save" in n for n in trainable)  # the head trains
        if family == "bert":
            assert any("pooler.modules_to_save" in n for n in trainable)

    # bitsandbytes repacks 4-bit weights for its CPU kernel on first use (same values, new
    # layout): those are checked as frozen via requires_grad, the rest by value.
    packed = {n for n, p in after.items() if type(p).__name__ == "Params4bit"}
    assert not any(after[n].requires_grad for n in packed)
    changed = {n for n in before if n not in packed and not torch.equal(before[n], after[n].detach())}
    frozen = set(before) - trainable - packed
    assert not (changed & frozen), f"frozen parameters changed: {sorted(changed & frozen)[:5]}"
    # Every trainable tensor moved (AdaLoRA may mask a whole rank vector to zero: allow lora_E).
    unchanged = {n for n in trainable - changed if not (method == "adalora" and "lora_E" in n)}
    assert not unchanged, f"trainable parameters did not change: {sorted(unchanged)[:5]}"
    if method == "qlora":
        assert any(type(p).__name__ == "Params4bit" for p in model.parameters())


def test_same_cell_twice_gives_same_metrics(tiny_models, tiny_subset, tmp_path):
    spec = cell_spec(tiny_models["bert"], "lora", epochs=2, lr=5e-3)
    assert run_cli(spec, tiny_subset, tmp_path / "a") == 0
    assert run_cli(spec, tiny_subset, tmp_path / "b") == 0
    a, b = (json.loads((tmp_path / x / "metrics.json").read_text()) for x in "ab")
    assert a["val"] == b["val"] and a["test"] == b["test"]
    assert (tmp_path / "a/predictions.jsonl").read_text() == (tmp_path / "b/predictions.jsonl").read_text()


def test_multi_label_cell(tiny_models, tmp_path):
    from conftest_train import make_subset, truncate_test

    data = truncate_test(make_subset(tmp_path / "data", 4, 80, mode="multi"), 90)
    spec = cell_spec(tiny_models["bert"], "lora", k=4, n=80, mode="multi", metric="f1_macro")
    assert run_cli(spec, data, tmp_path / "run") == 0
    m = json.loads((tmp_path / "run/metrics.json").read_text())
    for key in ("f1_micro", "precision_micro", "recall_micro", "exact_match"):
        assert 0.0 <= m["test"][key] <= 1.0
    assert m["test"]["accuracy"] == m["test"]["exact_match"] and "confusion_matrix" not in m["test"]
    preds = [json.loads(line) for line in (tmp_path / "run/predictions.jsonl").read_text().splitlines()]
    assert all(len(p["probs"]) == 4 for p in preds)


def test_save_adapter_is_safetensors_only(tiny_models, tiny_subset, tmp_path):
    spec = cell_spec(tiny_models["llama"], "lora", epochs=1, save_adapter=True)
    assert run_cli(spec, tiny_subset, tmp_path) == 0
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert "adapter_model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)


def test_bad_model_path_fails_with_record_and_is_not_retried(tiny_subset, tmp_path, capsys, monkeypatch):
    spec = cell_spec(tmp_path / "no-model-here", "lora")
    out = tmp_path / "run"
    assert run_cli(spec, tiny_subset, out) == 2
    err = capsys.readouterr().err
    assert "no config.json" in err and "what to do" in err and "\n" not in err.strip()
    failure = json.loads((out / "failure.json").read_text())
    assert failure["status"] == "failed" and failure["error"]["type"] == "CellError"
    assert failure["error"]["retryable"] is False and failure["error"]["hint"]
    assert not (out / "metrics.json").exists()
    # The retry sees the same non-retryable error with the same config: fails without loading.
    import emogrid.models.loading

    def no_load(*args, **kwargs):
        raise AssertionError("the retry loaded the model again")

    monkeypatch.setattr(emogrid.models.loading, "load_model", no_load)
    assert run_cli(spec, tiny_subset, out, attempt=2) == 2
    assert "not retrying" in capsys.readouterr().err


def test_missing_data_is_a_data_error(tiny_models, tmp_path):
    assert run_cli(cell_spec(tiny_models["bert"], "lora"), tmp_path / "nodata", tmp_path / "run") == 2
    assert json.loads((tmp_path / "run/failure.json").read_text())["error"]["type"] == "DataError"


def test_retry_after_oom_halves_micro_batch_and_success_clears_failure(tiny_models, tiny_subset, tmp_path):
    spec = hashed(cell_spec(tiny_models["bert"], "lora", epochs=1, batch_size=8))
    out = tmp_path / "run"
    out.mkdir()
    (out / "failure.json").write_text(json.dumps({
        "status": "failed", "batch_size": 8, "grad_accum": 1,
        "error": {"type": "OutOfMemoryError", "retryable": True, "message": "CUDA out of memory at micro-batch 8"},
        "provenance": {"config_hash": spec["config_hash"]}}))
    assert run_cli(spec, tiny_subset, out, attempt=2) == 0
    eff = json.loads((out / "metrics.json").read_text())["efficiency"]
    assert (eff["batch_size"], eff["grad_accum"], eff["effective_batch_size"]) == (4, 2, 8)
    assert not (out / "failure.json").exists()


def test_signal_after_metrics_written_does_not_cost_the_cell(tiny_models, tiny_subset, tmp_path, monkeypatch):
    """Ctrl-C / SIGTERM landing right after metrics.json is written (sent from a hook at that
    very point, not by timing): the job still exits 0 with its results whole, so Snakemake
    never throws a finished cell away."""
    spec = hashed(cell_spec(tiny_models["bert"], "lora", epochs=1))
    out = tmp_path / "run"
    sent = []

    def interrupt(run_dir):
        assert (run_dir / "metrics.json").is_file() and (run_dir / ".running.json").is_file()
        for sig in (signal.SIGINT, signal.SIGTERM):
            os.kill(os.getpid(), sig)
            sent.append(sig)

    monkeypatch.setattr(write, "AFTER_METRICS_HOOK", interrupt)
    # whatever this process had (a shell's background job starts with SIGINT ignored)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert run_cli(spec, tiny_subset, out) == 0
    assert sent == [signal.SIGINT, signal.SIGTERM]
    check_metrics_file(out, spec)
    assert "arrived after the results were written" in (out / "run.log").read_text()
    assert not (out / ".running.json").exists()
    # outside that window the handlers are back: an interrupt is what it was before
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_invalid_own_output_is_a_failure_not_a_success(tiny_models, tiny_subset, tmp_path, monkeypatch):
    """The train rule checks its own metrics.json before declaring success."""
    spec = hashed(cell_spec(tiny_models["bert"], "lora", epochs=1))
    out = tmp_path / "run"

    def corrupt(run_dir):
        m = json.loads((run_dir / "metrics.json").read_text())
        m["test"]["accuracy"] = 1.5
        (run_dir / "metrics.json").write_text(json.dumps(m))

    monkeypatch.setattr(write, "AFTER_METRICS_HOOK", corrupt)
    assert run_cli(spec, tiny_subset, out) == 1
    assert not (out / "metrics.json").exists()
    failure = json.loads((out / "failure.json").read_text())
    assert "test.accuracy: expected a value <= 1, got 1.5" in failure["error"]["message"]


def test_oom_message_names_batch_and_fix():
    info = describe_failure(torch.OutOfMemoryError("CUDA out of memory"), {"batch_size": 4})
    assert info["retryable"] and "micro-batch 4" in info["message"] and "qlora" in info["hint"]


def test_nan_loss_fails_with_hint(tiny_models, tiny_subset, tmp_path):
    spec = hashed(cell_spec(tiny_models["bert"], "full", epochs=1))

    def poison(model):
        model.classifier.weight.data.fill_(float("nan"))

    with pytest.raises(NaNLossError, match="loss became nan") as err:
        train.run_cell(spec, tiny_subset, tmp_path, {"batch_size": 8, "grad_accum": 1}, now(), on_model=poison)
    assert "lower train.lr" in err.value.hint
    assert describe_failure(err.value, {})["retryable"] is False


def _cli(spec_file: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "emogrid.cli", "train", "--spec", f"@{spec_file}", "--data", str(data),
            "--out", str(out)]


def _wait_for(predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def resume_setup(tiny_models, tmp_path_factory):
    """A cell long enough to kill mid-way (many steps per epoch), and its uninterrupted result."""
    from conftest_train import make_subset, truncate_test

    root = tmp_path_factory.mktemp("resume")
    data = truncate_test(make_subset(root / "data", 3, 120), 30)
    spec = cell_spec(tiny_models["bert"], "lora", epochs=3, patience=3, batch_size=2, lr=5e-3)
    spec_file = root / "spec.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(train.__file__).parents[2])}
    ref = subprocess.run(_cli(spec_file, data, root / "ref"), env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    return root, data, spec_file, env, json.loads((root / "ref/metrics.json").read_text())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_killed_cell_resumes_from_checkpoint(resume_setup, sig):
    root, data, spec_file, env, ref = resume_setup
    out = root / f"run-{sig.name}"
    proc = subprocess.Popen(_cli(spec_file, data, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / ".checkpoint"
    if sig == signal.SIGKILL:  # after the first epoch's checkpoint
        ready = lambda: any((p / "trainer_state.json").exists() for p in ckpt.glob("checkpoint-*"))  # noqa: E731
    else:  # mid-epoch: SIGTERM must save its own checkpoint
        ready = lambda: (out / "run.log").exists() and " step 1/" in (out / "run.log").read_text()  # noqa: E731
    assert _wait_for(ready, proc), f"cell ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    proc.stderr.close()
    assert rc == (-9 if sig == signal.SIGKILL else 143)
    assert not (out / "metrics.json").exists() and list(ckpt.glob("checkpoint-*"))

    second = subprocess.run(_cli(spec_file, data, out), env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    m = json.loads((out / "metrics.json").read_text())
    eff = m["efficiency"]
    assert eff["resumed_from_step"] > 0
    assert eff["optimizer_steps_this_run"] < eff["optimizer_steps"] == ref["efficiency"]["optimizer_steps"]
    log_text = (out / "run.log").read_text()
    assert "resuming from" in log_text
    assert log_text.index(" step 1/") < log_text.index("resuming from")  # the first run's lines stay
    for split in ("val", "test"):
        assert m[split]["accuracy"] == pytest.approx(ref[split]["accuracy"], abs=0.02)
        assert m[split]["f1_macro"] == pytest.approx(ref[split]["f1_macro"], abs=0.02)
    assert not ckpt.exists()


def test_checkpoint_of_another_config_is_discarded(tiny_models, tiny_subset, tmp_path):
    ckpt = tmp_path / ".checkpoint" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    (tmp_path / ".checkpoint" / "config_hash.json").write_text(json.dumps({"config_hash": "other"}))
    assert run_cli(cell_spec(tiny_models["bert"], "lora", epochs=1), tiny_subset, tmp_path) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["efficiency"]["resumed_from_step"] == 0


def test_int8_lora_cell(tiny_models, tiny_subset, tmp_path):
    spec = cell_spec(tiny_models["llama"], "qlora", epochs=1)
    spec["method"]["quantize"] = "int8"
    assert run_cli(spec, tiny_subset, tmp_path) == 0
    assert check_metrics_file(tmp_path, hashed(spec))["efficiency"]["trainable_params"] > 0


def test_cpu_threads_follow_the_job_allocation():
    assert cpu_threads({"OMP_NUM_THREADS": "3", "SLURM_CPUS_PER_TASK": "8"}) == 3
    assert cpu_threads({"SLURM_CPUS_PER_TASK": "8"}) == 8
    assert 1 <= cpu_threads({"OMP_NUM_THREADS": "0"}) <= (os.cpu_count() or 1)


@pytest.mark.parametrize("value, expected", [
    ("epoch", ("epoch", 1.0)), ("0.25 epoch", ("epoch", 0.25)), ("2 epochs", ("epoch", 2.0)),
    ("50 steps", ("steps", 50)), ("1step", ("steps", 1)), (50, ("steps", 50))])
def test_parse_eval_every(value, expected):
    from emogrid.training.arguments import eval_schedule, parse_eval_every

    assert parse_eval_every(value) == expected
    sched = eval_schedule(value, steps_per_epoch=180)
    assert sched["save_strategy"] == sched["eval_strategy"]  # the best model needs a save per evaluation
    if value != "epoch":
        assert sched["eval_steps"] == sched["save_steps"] == (expected[1] if expected[0] == "steps"
                                                              else round(expected[1] * 180))


@pytest.mark.parametrize("bad", ["0 steps", "1.5 steps", "weekly", 0, True])
def test_parse_eval_every_rejects(bad):
    from emogrid.training.arguments import parse_eval_every

    with pytest.raises(CellError, match="train.eval_every"):
        parse_eval_every(bad)


def test_eval_every_steps_patience_in_evaluations_and_best_checkpoint_restored(tiny_models, tiny_subset, tmp_path):
    # 54 training examples / batch 8 = 7 steps per epoch; 4 epochs; evaluate every 3 steps.
    spec = cell_spec(tiny_models["bert"], "lora", epochs=4, lr=5e-3, eval_every="3 steps", patience=2)
    assert run_cli(spec, tiny_subset, tmp_path) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    evals = [r for r in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines()) if "eval" in r]
    steps = [r["step"] for r in evals]
    assert steps == list(range(3, 3 * len(steps) + 1, 3))  # every 3 optimizer steps, none per epoch
    accs = [r["eval"]["accuracy"] for r in evals]
    best = max(range(len(accs)), key=lambda i: (accs[i], -i))  # the Trainer keeps the first best
    assert metrics["efficiency"]["best_step"] == steps[best]
    assert metrics["val"]["accuracy"] == pytest.approx(accs[best])  # the best evaluation's weights
    if metrics["efficiency"]["optimizer_steps"] < 28:  # stopped early: exactly `patience` evals without gain
        assert len(accs) - 1 - best == 2


def test_report_to_tensorboard_writes_event_files_offline(tiny_models, tiny_subset, tmp_path, monkeypatch):
    """train.report_to: tensorboard -> results/tensorboard/<study>/<cell_id>/ event files with the
    training loss and the evaluations, no server, no network."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("EMOGRID_REPORT_TO", raising=False)
    monkeypatch.setenv("EMOGRID_STUDY", "mystudy")
    spec = cell_spec(tiny_models["bert"], "lora", epochs=1, lr=5e-3, report_to="tensorboard")
    out = tmp_path / "results" / "runs" / spec["cell_id"]
    assert run_cli(spec, tiny_subset, out) == 0
    log_dir = tmp_path / "results" / "tensorboard" / "mystudy" / spec["cell_id"]
    events = list(log_dir.glob("events.out.tfevents.*"))
    assert events, f"no event file in {log_dir}"
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "train/loss" in scalars and "eval/accuracy" in scalars
    assert len(acc.Scalars("eval/accuracy")) >= 1


def test_report_to_is_global_and_never_in_the_spec():
    import copy

    import yaml

    from emogrid.study.config import finalize
    from emogrid.study.grid import expand_cells
    from emogrid.study.merge import deep_merge
    from tests.helpers import REPO

    base = yaml.safe_load((REPO / "config.yaml").read_text())
    plain = expand_cells(finalize(copy.deepcopy(base)))[0]
    traced = expand_cells(finalize(deep_merge(base, {"train": {"report_to": "tensorboard"}})))[0]
    assert "report_to" not in traced.spec["train"]
    assert plain.spec["config_hash"] == traced.spec["config_hash"]  # switching curves on reruns nothing


def test_zero_step_cell_fails_instead_of_reporting_an_untrained_model(tiny_models, tiny_subset, tmp_path):
    # the config rejects train.epochs: 0 everywhere (test_config); a hand-written spec still must not pass
    spec = cell_spec(tiny_models["bert"], "lora", epochs=0)
    assert run_cli(spec, tiny_subset, tmp_path) == 2
    assert not (tmp_path / "metrics.json").exists()
    failure = json.loads((tmp_path / "failure.json").read_text())
    assert "zero optimizer steps" in failure["error"]["message"] and "train.epochs" in failure["error"]["hint"]


def test_patience_zero_trains_every_step(tiny_models, tiny_subset, tmp_path):
    """patience 0 = no early stopping: with evaluations every quarter epoch the cell still runs
    epochs x steps per epoch optimizer steps (a callback with patience 0 stopped at the first)."""
    # 54 training examples / batch 8 = 7 optimizer steps per epoch; 3 epochs
    spec = cell_spec(tiny_models["bert"], "lora", epochs=3, lr=5e-3, eval_every="0.25 epoch", patience=0)
    assert run_cli(spec, tiny_subset, tmp_path) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["efficiency"]["optimizer_steps"] == 3 * 7
    assert metrics["efficiency"]["epochs_run"] == 3
    evals = [r for r in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines()) if "eval" in r]
    accs = [r["eval"]["accuracy"] for r in evals]
    assert len(evals) >= 8  # evaluated all along, never stopped
    assert metrics["val"]["accuracy"] == pytest.approx(max(accs))  # the best evaluation restored


def test_max_steps_replaces_the_epochs(tiny_models, tiny_subset, tmp_path):
    """train.max_steps: exactly that many optimizer steps, past the end of train.epochs (the data
    cycles), the Trainer's max_steps."""
    # 54 training examples / batch 8 = 7 optimizer steps per epoch; 1 epoch would be 7
    spec = cell_spec(tiny_models["bert"], "lora", epochs=1, max_steps=10, lr=5e-3, patience=0)
    assert run_cli(spec, tiny_subset, tmp_path) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["efficiency"]["optimizer_steps"] == 10
    assert metrics["efficiency"]["epochs_run"] == 2


def test_restore_best_false_tests_the_last_step(tiny_models, tiny_subset, tmp_path):
    """train.restore_best: false evaluates the model the last step left (a paper that trains N
    epochs and reports the end), not the best evaluation's weights."""
    import math

    spec = cell_spec(tiny_models["bert"], "lora", epochs=3, lr=5e-3, eval_every="2 steps", patience=0,
                     restore_best=False)
    assert run_cli(spec, tiny_subset, tmp_path) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    evals = [r["eval"] for r in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines())
             if "eval" in r]
    # the tested model's validation loss, from its predicted probabilities (single-label: -log p(gold))
    val = [r for r in map(json.loads, (tmp_path / "predictions.jsonl").read_text().splitlines())
           if r["split"] == "val"]
    loss = sum(-math.log(r["probs"][r["gold"][0]]) for r in val) / len(val)
    best = max(range(len(evals)), key=lambda i: (evals[i]["accuracy"], -i))  # the Trainer's best: the first
    assert best != len(evals) - 1 and abs(evals[best]["loss"] - evals[-1]["loss"]) > 1e-3  # the two differ
    assert loss == pytest.approx(evals[-1]["loss"], abs=1e-4)  # the last step's weights were tested
    assert metrics["efficiency"]["best_step"] == metrics["efficiency"]["optimizer_steps"] == 21


def test_later_train_keys_at_their_defaults_keep_the_config_hash():
    """train.max_steps and train.restore_best at their defaults leave a cell's config hash as it
    was before they existed (no finished cell reruns); set, they change it."""
    import copy

    import yaml

    from emogrid.study.config import finalize
    from emogrid.study.grid import expand_cells
    from tests.helpers import REPO

    spec = expand_cells(finalize(yaml.safe_load((REPO / "config.yaml").read_text())))[0].spec
    assert spec["train"]["max_steps"] is None and spec["train"]["restore_best"] is True
    before = copy.deepcopy(spec)
    for key in ("max_steps", "restore_best"):
        del before["train"][key]
    assert config_hash(spec) == config_hash(before)
    assert config_hash({**spec, "train": {**spec["train"], "max_steps": 40}}) != config_hash(spec)
    assert config_hash({**spec, "train": {**spec["train"], "restore_best": False}}) != config_hash(spec)
