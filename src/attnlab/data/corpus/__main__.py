"""Write the built-in corpus and print its statistics as one JSON object.

    python -m attnlab.data.corpus data/en-vk --seed 0 --train-size 300000
"""

from __future__ import annotations

import argparse
import json
import sys

from attnlab.data.corpus import generate_corpus, lexicon_sizes, write_corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnlab.data.corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=300_000)
    parser.add_argument("--valid-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--examples", type=int, default=3, help="test pairs to print")
    args = parser.parse_args(argv)
    stats = write_corpus(args.out_dir, seed=args.seed, train_size=args.train_size,
                         valid_size=args.valid_size, test_size=args.test_size)
    stats["lexicon"] = lexicon_sizes()
    print(json.dumps(stats, indent=2))
    if args.examples:
        corpus = generate_corpus(args.seed, 0, 0, args.test_size)
        for src, tgt in corpus["test"][: args.examples]:
            print(f"en: {src}\nvk: {tgt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
