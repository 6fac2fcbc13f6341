"""`tagger backfill`: streamed, ordered, parallel, resumable; locally and on a real local Dask cluster."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tagger.service.backfill import backfill

from .conftest import MODELS, ROOT

MODEL = str(MODELS / "current")


@pytest.fixture(scope="module")
def export(tmp_path_factory, corpus):
    """A helpdesk export: every held-out corpus message 6 times over, with ids, a blank line and a broken one."""
    path = tmp_path_factory.mktemp("bf") / "export.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        n = 0
        for _ in range(6):
            for e in (e for e in corpus[1] if e.stage is not None):
                n += 1
                fh.write(json.dumps({"id": n, "text": e.text, "channel": e.channel}, ensure_ascii=False) + "\n")
        fh.write("\n{broken json\n")
    return path


@pytest.fixture(scope="module")
def reference(export, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out.jsonl"
    counts = backfill(export, out, MODEL, workers=1, chunk_size=500)
    return out, counts


def _ids(path):
    return [json.loads(line).get("id") for line in path.read_text(encoding="utf-8").splitlines()]


def test_output_is_aligned_with_input_and_bad_lines_are_reported(export, reference):
    out, counts = reference
    lines = out.read_text(encoding="utf-8").splitlines()
    n_input = sum(1 for line in export.read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(lines) == n_input and counts["errors"] == 1
    last = json.loads(lines[-1])
    assert "error" in last and last["line"] == n_input + 1
    first = json.loads(lines[0])
    assert first["id"] == 1 and first["stage"] and first["tags"]


def test_two_local_workers_give_the_same_output_in_the_same_order(export, reference, tmp_path):
    out = tmp_path / "par.jsonl"
    backfill(export, out, MODEL, workers=2, chunk_size=300)
    assert out.read_bytes() == reference[0].read_bytes()


def test_killed_run_resumes_without_loss_or_duplicates(export, reference, tmp_path):
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "tagger.cli", "backfill", str(export), "-o", str(out), "--chunk-size", "100",
           "--model", MODEL]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = out.with_name(out.name + ".progress.json")
    deadline = time.time() + 60
    while time.time() < deadline:
        if progress.exists() and json.loads(progress.read_text() or "{}").get("chunks_done", 0) >= 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = json.loads(progress.read_text())["lines_done"]
    assert 0 < done_before < len(reference[0].read_text().splitlines())
    with open(out, "ab") as fh:  # a half-written chunk after the checkpoint must be cut away
        fh.write(b'{"id": 999999, "partial')
    resumed = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == reference[0].read_bytes()


def test_existing_output_is_not_overwritten_without_resume(export, reference):
    from tagger.errors import TaggerError

    with pytest.raises(TaggerError, match="--resume"):
        backfill(export, reference[0], MODEL)


def test_csv_export(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text('id,text,channel\n1,"Mans pasūtījums vēl nav atnācis",ticket\n2,"Kde je můj balík?",chat\n',
                   encoding="utf-8")
    out = tmp_path / "t.jsonl"
    backfill(src, out, MODEL)
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["1", "2"] and rows[0]["lang"] == "lv"


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_output(export, reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        out = tmp_path / "dask.jsonl"
        counts = backfill(export, out, MODEL, chunk_size=400, dask_address=cluster.scheduler_address)
    assert counts["errors"] == 1
    assert out.read_bytes() == reference[0].read_bytes()
