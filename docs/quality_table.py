"""Render the README's model-quality section from a real evaluation (`tagger evaluate --json` on stdin).

    tagger evaluate --json | python docs/quality_table.py
"""
import json
import sys

NAMES = {"en": "English", "lv": "Latvian", "da": "Danish", "zh": "Chinese", "it": "Italian", "ru": "Russian",
         "de": "German", "es": "Spanish", "fr": "French", "pt": "Portuguese", "nl": "Dutch", "pl": "Polish"}


def main() -> None:
    r = json.load(sys.stdin)
    st, se = r["stage"], r["sentiment"]
    print(f"Model `{r.get('model')}`, measured on the held-out split: {r['n']} messages in whole writing batches "
          "never used for training (files `*_04`, `*_08`, ... of `training_data/`).\n")
    print("| language | held-out messages | stage macro-F1 | stage accuracy | sentiment macro-F1 | sentiment accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    for lang in sorted(st["per_lang"], key=lambda k: NAMES.get(k, k)):
        a, b = st["per_lang"][lang], se["per_lang"][lang]
        print(f"| {NAMES.get(lang, lang)} ({lang}) | {a['n']} | {a['macro_f1']:.3f} | {a['accuracy']:.3f} | "
              f"{b['macro_f1']:.3f} | {b['accuracy']:.3f} |")
    print(f"| **all** | {r['n']} | **{st['macro_f1']:.3f}** | {st['accuracy']:.3f} | **{se['macro_f1']:.3f}** | "
          f"{se['accuracy']:.3f} |\n")
    print("Per class (all languages):\n")
    print("| task | class | precision | recall | F1 | support |")
    print("|---|---|---:|---:|---:|---:|")
    for task, m in (("stage", st), ("sentiment", se)):
        for c, v in m["per_class"].items():
            print(f"| {task} | {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    print(f"\nShare of held-out messages that get the `mot_review` tag at the default threshold: "
          f"{r['review_share']:.1%}.")


if __name__ == "__main__":
    main()
