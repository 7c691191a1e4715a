"""``python -m dslc.serving --model models:/flights_late/3 [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import logging
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dslc.serving",
        description="Serve a registered model over HTTP (POST /predict, /health, /ready, "
        "/metrics, /admin/load). Settings come from DSLC_* variables.",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="models:/<name>/<version>, models:/<name>@<alias>, or none to start empty "
        "(default: models:/<DSLC_MODEL_NAME>@champion)",
    )
    parser.add_argument("--host", default=None, help="default DSLC_SERVING_HOST (127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="default DSLC_SERVING_PORT (8000)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from dslc.model.registry import RegistryError
    from dslc.serving.app import serve
    from dslc.settings import get_settings

    model = args.model or f"models:/{get_settings().model_name}@champion"
    try:
        serve(model, host=args.host, port=args.port, log_level=args.log_level)
    except RegistryError as e:  # a malformed --model
        print(f"error: {e}, or none to start without a model", file=sys.stderr)
        return 2
    except ValueError as e:  # an invalid DSLC_* setting
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
