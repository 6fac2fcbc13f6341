"""Convert the human-rated snippets of vaderSentiment's source release into sentiment-only JSONL batches.

The source: `pip download --no-binary :all: vaderSentiment==3.3.2`, then
`additional_resources/hutto_ICWSM_2014.tar.gz` inside it (MIT licence, Hutto & Gilbert, ICWSM 2014):
about 23,700 English tweets, Amazon review, movie review and New York Times editorial snippets, each with
the mean of about 20 human ratings on -4..+4. Each source is cut, in its own order, into files of 500
snippets (`vader_<source>_NN.jsonl`); files whose number is a multiple of 4 are held out, as for the
corpus. The records keep the mean `rating`; the sentiment label is derived from it when the data is read
(tagger.data.sentiment_from_rating), so the band is decided in one place.

    python training_data/vader/make_vader.py /path/to/hutto_ICWSM_2014
"""
import json
import sys
from pathlib import Path

SOURCES = {"tweets": "social", "amazonReviewSnippets": "social", "movieReviewSnippets": "social",
           "nytEditorialSnippets": "ticket"}
PER_FILE = 500


def main(src: str) -> None:
    out_dir = Path(__file__).parent
    seen: set[str] = set()  # a snippet repeated (within or across sources) is kept once, where it first is
    for name, channel in SOURCES.items():
        rows = []
        for line in (Path(src) / f"{name}_GroundTruth.txt").read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            text = "\t".join(parts[2:]).strip() if len(parts) >= 3 else ""
            if not any(ch.isalpha() for ch in text) or text.lower() in seen:
                continue
            seen.add(text.lower())
            rows.append({"text": text, "rating": round(float(parts[1]), 4),
                         "channel": channel, "lang": "en", "id": f"{name}:{parts[0]}"})
        short = name.replace("ReviewSnippets", "").replace("EditorialSnippets", "")
        for n, start in enumerate(range(0, len(rows), PER_FILE), 1):
            with (out_dir / f"vader_{short.lower()}_{n:02d}.jsonl").open("w", encoding="utf-8") as fh:
                for r in rows[start:start + PER_FILE]:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(name, len(rows))


if __name__ == "__main__":
    main(sys.argv[1])
