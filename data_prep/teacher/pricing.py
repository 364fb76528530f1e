"""Per-model prices (USD per 1M tokens) for the cost estimate; an editable YAML/JSON table.

The table maps model names to ``{input: ..., output: ...}``. A model is matched exactly, else by the
longest table key it starts with (``gpt-4o-2024-08-06`` -> ``gpt-4o``); unknown models cost ``None``
(shown as "n/a"), never a guess.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from data_prep.schema import DataError

DEFAULT_PRICES = Path(__file__).resolve().parent / "prices.yaml"  # shipped as package data
PRICES_ENV = "DEAR_TEACHER_PRICES"


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


def load_prices(path: str | Path | None = None) -> tuple[dict[str, Price], str | None]:
    """The price table from ``path``, ``$DEAR_TEACHER_PRICES`` or the repository's configs/ file.

    Returns (table, the file it came from); an empty table when no file is found and none was asked for.
    """
    explicit = path is not None or os.environ.get(PRICES_ENV)
    p = Path(path or os.environ.get(PRICES_ENV) or DEFAULT_PRICES)
    if not p.is_file():
        if explicit:
            raise DataError("price table not found", path=str(p), fix="pass an existing YAML/JSON file to --prices")
        return {}, None
    from data_prep.readers import read_text

    text = read_text(p, "price table")
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as err:  # yaml.YAMLError or json.JSONDecodeError
        raise DataError(f"unreadable price table: {err}", path=str(p), fix="fix the YAML/JSON syntax") from err
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise DataError("price table needs a top-level 'models' mapping", path=str(p),
                        fix="models: {gpt-4o: {input: 2.5, output: 10.0}}")
    table: dict[str, Price] = {}
    for name, entry in models.items():
        if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
            raise DataError(f"model {name!r} needs exactly 'input' and 'output' prices (USD per 1M tokens)",
                            path=str(p), fix=f"{name}: {{input: 2.5, output: 10.0}}")
        try:
            table[str(name)] = Price(input=float(entry["input"]), output=float(entry["output"]))
        except (TypeError, ValueError):
            raise DataError(f"model {name!r} has a non-numeric price", path=str(p), fix="use numbers") from None
    return table, str(p)


def price_for(model: str, table: dict[str, Price]) -> Price | None:
    if model in table:
        return table[model]
    matches = [k for k in table if model.startswith(k)]
    return table[max(matches, key=len)] if matches else None
