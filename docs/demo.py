"""`make demo`: the product working on sample traffic against a local helpdesk stand-in, in a minute.

Starts `tagger serve` (generic webhook adapter) on 127.0.0.1 with its own SQLite file under `.demo/`
(never your real store), a helpdesk stand-in on 127.0.0.1 that accepts the tag writes, and posts signed
webhooks carrying held-out corpus messages in all twelve core languages plus a few plain reviews and
openers. Then prints what a team lead sees (`tagger tickets`, `tagger report`) and keeps the service up
for the dashboard until Ctrl-C.

    python docs/demo.py [--messages 48] [--no-wait]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_examples import ROOT, Stack, run  # noqa: E402

EXTRA = [("Very bad Experience!", "social"), ("Fantastic service here.", "social"), ("hello??", "chat"),
         ("Super Hotel, sehr sauber, gerne wieder!", "social"), ("物流很快，包装也很好，非常满意", "social")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=48)
    parser.add_argument("--no-wait", action="store_true", help="Stop after printing (no dashboard).")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tagger.classifier.data import load_corpus

    heldout = [e for e in load_corpus(ROOT / "training_data")[1] if e.stage is not None]
    by_lang: dict[str, list] = {}
    for e in heldout[::5]:
        by_lang.setdefault(e.lang, []).append(e)
    sample = [(e.text, e.channel) for group in zip(*by_lang.values(), strict=False) for e in group]
    sample = sample[:args.messages] + EXTRA
    folder = ROOT / ".demo"
    folder.mkdir(exist_ok=True)
    db_file = folder / "demo.db"
    for leftover in folder.glob("demo.db*"):
        leftover.unlink()
    print(f"demo store: {db_file} (separate from your real data)")
    started = time.perf_counter()
    stack = Stack(f"sqlite:///{db_file}")
    env = stack.env
    try:
        print(f"tagger serve on 127.0.0.1:{stack.port}, helpdesk stand-in on 127.0.0.1:{stack.desk_port}")
        written = stack.post(sample, prefix="demo-")
        print(f"{len(sample)} webhooks posted, {written} tag writes reached the helpdesk stand-in "
              f"{time.perf_counter() - started:.1f}s after start\n")
        print("$ tagger tickets --limit 15")
        print(run("tickets", "--limit", "15", env=env))
        print("$ tagger report --period 1d")
        print(run("report", "--period", "1d", env=env))
        if args.no_wait:
            return
        print(f"dashboard: http://127.0.0.1:{stack.port}/dashboard   (Ctrl-C stops the demo)")
        print(f"try: TAGGER_DB_URL=sqlite:///{db_file} tagger tickets --sentiment negative")
        stack.server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.close()


if __name__ == "__main__":
    main()
