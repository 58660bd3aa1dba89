"""The `inkit-connector` command line: one subcommand per verb; a user's mistake prints one
clear line (no traceback) and exits non-zero: 2 for configuration, 1 for everything else."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import os
import sys
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException

from connector import __version__
from connector.cli.redrive_args import add_parser as add_redrive_parser, options_from
from connector.cli.unknown_env import warn_unknown_variables
from connector.errors import ConfigError, ConnectorError
from connector.observability.logging_config import configure_logging
from connector.settings import SETTINGS, Settings

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_FAILURE = 1

_ENV_HELP = "configuration comes from environment variables:\n" + "\n".join(
    f"  {s.name:<38} {s.help}" for s in SETTINGS
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inkit-connector",
        description="Deliver Segment Identify events from Kafka to Inkit, at least once, "
        "in per-user order, with dead-lettering of what can never succeed.",
        epilog="Run `inkit-connector COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"inkit-connector {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    run = commands.add_parser(
        "run",
        help="consume the topic and deliver events to Inkit until SIGTERM",
        description="Consume KAFKA_TOPIC, map each Identify to an Inkit request, send it, and "
        "commit offsets only after delivery (or after the dead-letter copy is acked). "
        "SIGTERM/SIGINT drain in-flight requests (DRAIN_TIMEOUT_SECONDS), commit and exit 0.",
        epilog=_ENV_HELP,
        formatter_class=formatter,
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="map and log (without secrets or trait values) what would be sent; send nothing, "
        "write no dead letters and commit no offsets; INKIT_API_KEY is not needed",
    )

    commands.add_parser(
        "check",
        help="print the effective configuration (secrets redacted) and test connectivity",
        description="Print the effective configuration with secrets redacted, then check that "
        "the Kafka brokers, KAFKA_TOPIC, KAFKA_DLQ_TOPIC, the schema registry (for "
        "confluent-avro) and Inkit's host are reachable. Sends no event. Exit 0 when all pass.",
        epilog=_ENV_HELP,
        formatter_class=formatter,
    )

    preview = commands.add_parser(
        "preview",
        help="show the Inkit request each event on stdin would become",
        description="Read events on stdin and print one JSON line per event: the request that "
        "would be sent (method, URL, headers and body, with the API key redacted), or the "
        "skip / error reason. Reads the same configuration as `run` (Kafka settings and the "
        "API key are optional). Exit 0 when the input could be read.",
        epilog="--format json: one Segment JSON message per line. avro / confluent-avro: one "
        "record per line, base64-encoded (confluent-avro also needs SCHEMA_REGISTRY_URL).",
    )
    preview.add_argument(
        "--format",
        choices=("json", "avro", "confluent-avro"),
        default="json",
        help="how the events on stdin are encoded (default: json)",
    )

    produce = commands.add_parser(
        "produce",
        help="encode JSON-line events in KAFKA_VALUE_FORMAT and produce them to KAFKA_TOPIC",
        description="Read Segment events as JSON lines (from FILE, or stdin) and produce them to "
        "KAFKA_TOPIC encoded as KAFKA_VALUE_FORMAT (for confluent-avro the bundled schema is "
        "registered under <topic>-value at SCHEMA_REGISTRY_URL). The key is userId, else "
        "anonymousId. Exit 0 when every line was produced and acknowledged.",
        epilog=_ENV_HELP,
        formatter_class=formatter,
    )
    produce.add_argument("file", nargs="?", help="JSON lines file (default: stdin)")
    add_redrive_parser(commands, _ENV_HELP)
    return parser


def _settings(
    require_kafka: bool, require_api_key: bool, value_format: str | None = None
) -> Settings:
    env = dict(os.environ)
    warn_unknown_variables(env, sys.stderr)
    if value_format is not None:
        env["KAFKA_VALUE_FORMAT"] = value_format
    return Settings.from_env(env, require_kafka=require_kafka, require_api_key=require_api_key)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        settings = _settings(require_kafka=True, require_api_key=not args.dry_run)
        configure_logging(settings.log_level, settings.log_format)
        from connector.cli.run import run

        return run(settings, dry_run=args.dry_run)
    if args.command == "check":
        settings = _settings(require_kafka=True, require_api_key=True)
        configure_logging("WARNING", settings.log_format)
        from connector.cli.check import run_checks

        print(json.dumps(settings.redacted(), indent=2, default=str))
        ok = run_checks(
            settings, lambda r: print(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
        )
        return 0 if ok else EXIT_FAILURE
    if args.command == "preview":
        settings = _settings(require_kafka=False, require_api_key=False, value_format=args.format)
        configure_logging("WARNING", "text")
        from connector.cli.preview import run_preview

        return run_preview(settings, args.format, sys.stdin.buffer, sys.stdout)
    if args.command == "produce":
        settings = _settings(require_kafka=True, require_api_key=False)
        configure_logging("ERROR", "text")
        from connector.cli.produce import run_produce

        if args.file:
            try:
                with open(args.file, encoding="utf-8") as lines:
                    return run_produce(settings, lines, sys.stdout)
            except OSError as exc:
                raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from exc
        return run_produce(settings, sys.stdin, sys.stdout)
    if args.command == "redrive":
        settings = _settings(require_kafka=True, require_api_key=not args.dry_run)
        # On a terminal the progress bar speaks; lifecycle lines would break it.
        level = "WARNING" if sys.stderr.isatty() else settings.log_level
        configure_logging(level, settings.log_format)
        from connector.cli.redrive import run_redrive

        return run_redrive(settings, options_from(args), out=sys.stdout, err=sys.stderr)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    # A crash in C (librdkafka, a Python extension) then leaves every thread's Python stack on
    # stderr, in the pod's log, instead of a bare exit code 139.
    if not faulthandler.is_enabled():
        with contextlib.suppress(AttributeError, ValueError, OSError):  # stderr without a fd
            faulthandler.enable()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"inkit-connector: configuration error: {exc.detail}", file=sys.stderr)
        return EXIT_CONFIG
    except ConnectorError as exc:
        print(f"inkit-connector: {exc.detail or exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KafkaException as exc:
        # librdkafka refuses a configuration when a client is built: an unknown or mistyped
        # KAFKA_CONFIG_* property, an unreadable ssl.ca.location (both _INVALID_ARG, checked
        # with confluent-kafka 2.x: "No such configuration property", "ssl.ca.location failed").
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        text = error.str() if error is not None else str(exc)
        if error is not None and error.code() == KafkaError._INVALID_ARG:
            print(
                f"inkit-connector: configuration error: Kafka refuses the settings: {text} "
                "(check KAFKA_CONFIG_* variables)",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        print(f"inkit-connector: Kafka: {text}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
