"""`dear tiny-model OUT_DIR`: build the tiny offline model used by tests and the quickstart."""

from __future__ import annotations

import argparse

from dear_train.tiny_model import build_tiny_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, prog="dear tiny-model", description=__doc__)
    ap.add_argument("out_dir")
    ap.add_argument("--hidden-size", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate-size", type=int, default=128)
    ap.add_argument("--vocab-size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    out = build_tiny_model(a.out_dir, hidden_size=a.hidden_size, num_hidden_layers=a.layers,
                           num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                           intermediate_size=a.intermediate_size, vocab_size=a.vocab_size, seed=a.seed)
    print(f"tiny model written to {out}")
    return 0
