"""`dear tiny-model OUT_DIR`: build the tiny offline model used by tests and the quickstart."""

from __future__ import annotations

from dataclasses import dataclass

from data_prep.cli_options import OptionError, checked, flags_of, option, parse_options
from data_prep.cli_options import build_parser as build_options_parser
from data_prep.cli_run import run_command


@dataclass
class TinyModelOptions:
    """The tiny Llama's shape (defaults: the one every test and the quickstart use)."""

    out_dir: str = option(help="folder to write the model and tokenizer to", flag="out_dir")
    hidden_size: int = option(64, help="hidden size")
    layers: int = option(2, help="decoder layers")
    heads: int = option(4, help="attention heads")
    kv_heads: int = option(2, help="key/value heads (grouped-query attention)")
    intermediate_size: int = option(128, help="MLP width")
    vocab_size: int = option(1024, help="tokenizer vocabulary (BPE trained offline)")
    seed: int = option(0, help="seed of the random weights")

    def check(self) -> None:
        for name in ("hidden_size", "layers", "heads", "kv_heads", "intermediate_size", "vocab_size"):
            if getattr(self, name) < 1:
                raise OptionError(name, f"must be >= 1, got {getattr(self, name)}", fix="use a positive number")
        if self.hidden_size % self.heads or self.heads % self.kv_heads:
            raise OptionError("heads", f"must divide --hidden-size ({self.hidden_size}) and be a multiple of "
                              f"--kv-heads ({self.kv_heads}), got {self.heads}", fix="e.g. --heads 4 --kv-heads 2")


def main(argv: list[str] | None = None) -> int:
    parser = build_options_parser(TinyModelOptions, prog="dear tiny-model", description=__doc__)
    a = parse_options(TinyModelOptions, argv, prog="dear tiny-model", parser=parser)
    return run_command("dear tiny-model", lambda: _run(a), flags=flags_of(TinyModelOptions), out=a.out_dir)


def _run(a: TinyModelOptions) -> int:
    checked(a, prog="dear tiny-model")
    from dear_train.tiny_model import build_tiny_model

    out = build_tiny_model(a.out_dir, hidden_size=a.hidden_size, num_hidden_layers=a.layers,
                           num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                           intermediate_size=a.intermediate_size, vocab_size=a.vocab_size, seed=a.seed)
    print(f"tiny model written to {out}")
    return 0
