"""A corpus for `attnlab embed-compare`: sentences that use both senses of four ambiguous
words (apple: fruit / company, bank: river / money, bat: animal / sport, plant: garden /
factory), seeded, one per line.

    python benchmarks/context_embeddings_corpus.py runs/senses.txt
    attnlab train mlm --text runs/senses.txt --out runs/senses-mlm --vocab-size 500 \
        --block-size 32 --batch-size 64 --lr 2e-3 --max-steps 3000 --time-budget 300
    attnlab embed-compare --model runs/senses-mlm --word apple \
        --context "an apple fell from the tree in the yard ." \
        --context "the apple ceo announced record profits after lunch ." --out runs/apple

The figures in docs/visualization.md came from these three commands (bert-tiny, 162 s of
training on a 2-core AMD EPYC, 88.3% held-out masked-token accuracy).
"""

import random

R = random.Random(0)
c = R.choice
PEOPLE = ["she", "he", "we", "they", "my sister", "the boy", "the old man", "a child", "i"]
TIME = ["after lunch", "after dinner", "in the morning", "at noon", "yesterday", "today"]
FRUIT = [
    lambda: f"{c(PEOPLE)} {c(['ate', 'peeled', 'sliced', 'picked', 'washed'])} a "
            f"{c(['ripe', 'red', 'green', 'juicy', 'sweet'])} apple {c(TIME)} .",
    lambda: f"the apple was {c(['juicy', 'sweet', 'sour', 'crisp', 'ripe'])} and "
            f"{c(['fresh', 'cold', 'soft', 'tasty'])} .",
    lambda: f"{c(PEOPLE)} baked an apple pie with {c(['sugar', 'cinnamon', 'butter'])} .",
    lambda: f"an apple fell from the tree in the {c(['orchard', 'garden', 'yard'])} .",
]
COMPANY = [
    lambda: f"apple {c(['stock', 'shares'])} {c(['crashed', 'rose', 'fell', 'jumped'])} "
            f"after the {c(['earnings report', 'product launch', 'court ruling'])} .",
    lambda: f"apple {c(['released', 'announced', 'launched'])} a new "
            f"{c(['phone', 'laptop', 'tablet', 'watch'])} {c(TIME)} .",
    lambda: f"investors {c(['bought', 'sold'])} apple shares {c(TIME)} .",
    lambda: f"the apple {c(['store', 'ceo', 'engineers'])} {c(['announced', 'expected'])} "
            f"record {c(['profits', 'sales', 'revenue'])} .",
]
RIVER = [
    lambda: f"{c(PEOPLE)} {c(['sat', 'walked', 'fished', 'rested'])} on the bank of the "
            f"{c(['river', 'stream', 'lake'])} {c(TIME)} .",
    lambda: f"the river bank was {c(['muddy', 'steep', 'green', 'flooded'])} .",
]
MONEY = [
    lambda: f"{c(PEOPLE)} {c(['deposited', 'withdrew', 'borrowed'])} money at the bank {c(TIME)} .",
    lambda: f"the bank {c(['raised', 'cut', 'kept'])} interest rates {c(TIME)} .",
]
ANIMAL = [
    lambda: f"a bat {c(['flew', 'hunted', 'slept', 'hung'])} in the "
            f"{c(['cave', 'barn', 'dark'])} .",
    lambda: f"the bat ate {c(['insects', 'moths', 'fruit'])} at night .",
]
SPORT = [
    lambda: f"{c(PEOPLE)} swung the bat and hit the {c(['ball', 'pitch'])} {c(TIME)} .",
    lambda: f"the {c(['wooden', 'heavy', 'new'])} bat broke during the {c(['game', 'match'])} .",
]
GARDEN = [
    lambda: f"{c(PEOPLE)} watered the plant in the {c(['garden', 'pot', 'window'])} {c(TIME)} .",
    lambda: f"the plant grew {c(['green', 'tall', 'new'])} leaves .",
]
FACTORY = [
    lambda: f"workers at the plant {c(['built cars', 'made steel', 'went on strike'])} {c(TIME)} .",
    lambda: f"the power plant {c(['closed', 'opened', 'burned coal'])} {c(TIME)} .",
]
ALL = FRUIT + COMPANY + RIVER + MONEY + ANIMAL + SPORT + GARDEN + FACTORY


def main(argv: list[str] | None = None) -> None:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="text file to write")
    parser.add_argument("--sentences", type=int, default=40000)
    args = parser.parse_args(argv)
    lines = [c(ALL)() for _ in range(args.sentences)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} sentences to {args.out}")


if __name__ == "__main__":
    main()
