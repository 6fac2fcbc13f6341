"""Render the README's model-quality section from real evaluations of the full model and the fast path.

    tagger evaluate --json > full.json && tagger evaluate --fast --json > fast.json
    python docs/quality_table.py full.json fast.json
"""
import json
import sys

NAMES = {"en": "English", "lv": "Latvian", "da": "Danish", "zh": "Chinese", "it": "Italian", "ru": "Russian",
         "de": "German", "es": "Spanish", "fr": "French", "pt": "Portuguese", "nl": "Dutch", "pl": "Polish",
         "sv": "Swedish", "nb": "Norwegian", "fi": "Finnish", "cs": "Czech", "ro": "Romanian", "tr": "Turkish",
         "uk": "Ukrainian", "ar": "Arabic", "ja": "Japanese", "ko": "Korean"}
SOURCES = {"vader_tweets": "tweets", "vader_amazon": "Amazon review snippets", "vader_movie": "movie review snippets",
           "vader_nyt": "NYT editorial snippets", "all": "**all**"}


def main() -> None:
    full, fast = (json.load(open(p, encoding="utf-8")) for p in sys.argv[1:3])
    st, se, fst, fse = full["stage"], full["sentiment"], fast["stage"], fast["sentiment"]
    print(f"Model `{full.get('model')}`. **Corpus** figures: the held-out split, {full['n']} messages in whole "
          "writing batches never used for training (files `*_04`, `*_08`, ... `*_24` of `training_data/<lang>/`). "
          "Full model = encoder + n-grams; fast = n-grams only (`--fast`).\n")
    print("| language | held-out | stage F1 full | stage F1 fast | sentiment F1 full | sentiment F1 fast |")
    print("|---|---:|---:|---:|---:|---:|")
    for lang in sorted(st["per_lang"], key=lambda k: NAMES.get(k, k)):
        print(f"| {NAMES.get(lang, lang)} ({lang}) | {st['per_lang'][lang]['n']} | "
              f"{st['per_lang'][lang]['macro_f1']:.3f} | {fst['per_lang'][lang]['macro_f1']:.3f} | "
              f"{se['per_lang'][lang]['macro_f1']:.3f} | {fse['per_lang'][lang]['macro_f1']:.3f} |")
    print(f"| **all** (macro-F1) | {full['n']} | **{st['macro_f1']:.3f}** | {fst['macro_f1']:.3f} | "
          f"**{se['macro_f1']:.3f}** | {fse['macro_f1']:.3f} |\n")
    print("**Real text** (human-written, human-rated English snippets from the held-out files of "
          "`training_data/vader/`, written by nobody on this project; sentiment only). Polarity accuracy: on the "
          "clearly positive or negative snippets, the share given exactly that label (neutral counts as wrong).\n")
    print("| source | snippets | polar | polarity acc. full | polarity acc. fast | 3-class acc. full |")
    print("|---|---:|---:|---:|---:|---:|")
    for src, name in SOURCES.items():
        a, b = full["real_text"][src], fast["real_text"][src]
        print(f"| {name} | {a['n']} | {a['n_polar']} | {a['polarity_accuracy']:.3f} | {b['polarity_accuracy']:.3f} "
              f"| {a['accuracy']:.3f} |")
    print("\nPer class (corpus, full model):\n")
    print("| task | class | precision | recall | F1 | support |")
    print("|---|---|---:|---:|---:|---:|")
    for task, m in (("stage", st), ("sentiment", se)):
        for c, v in m["per_class"].items():
            print(f"| {task} | {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    print(f"\n**Review tag** (corpus held-out; confidence = stage confidence x sentiment confidence; the default "
          f"threshold {full['review_threshold']} is marked):\n")
    print("| threshold | no review, full | both right among them, full | no review, fast | both right, fast |")
    print("|---:|---:|---:|---:|---:|")
    for a, b in zip(full["coverage"], fast["coverage"], strict=True):
        mark = " ←" if a["threshold"] == full["review_threshold"] else ""
        print(f"| {a['threshold']:.2f}{mark} | {a['no_review']:.1%} | {a['accuracy_no_review']:.1%} | "
              f"{b['no_review']:.1%} | {b['accuracy_no_review']:.1%} |")
    print(f"\nBoth labels right on all held-out messages: full {full['both_right']:.1%}, fast {fast['both_right']:.1%}.")


if __name__ == "__main__":
    main()
