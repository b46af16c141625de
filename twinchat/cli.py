"""The ``twinchat`` command. Built on the same services as the API; heavy libraries load only when used."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twinchat.config import Settings
    from twinchat.domain.control import Use
    from twinchat.ports import KeyStore
    from twinchat.services import IngestReport, TwinService

MAX_PROBLEMS_SHOWN = 50
DEMO_PANEL = "online-retail"
SYNTHETIC_DEMO_PANEL = "synthetic"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    from twinchat.domain.control import ConsentDenied

    try:
        return int(args.run(args) or 0)
    except ConsentDenied as exc:  # a refusal, not a failure: its own exit status
        print(f"twinchat: refused: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `twinchat twins | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except Exception as exc:  # one readable line for people; the traceback with TWINCHAT_DEBUG=1
        if _debug():
            raise
        print(f"twinchat: error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinchat",
        description="Conversational digital twins of customers, grounded in each customer's own history. "
        "Configuration comes from TWINCHAT_* environment variables (see README).",
    )
    from twinchat import __version__

    parser.add_argument("--version", action="version", version=f"twinchat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ingest", help="add customers' history from JSONL, CSV or JSON files")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--source", help="source for events that name none (purchase, crm, support, review, ...)")
    p.add_argument("--panel", help="put every twin touched into this panel")
    p.add_argument(
        "--format",
        choices=["auto", "events", "online-retail"],
        default="auto",
        help="events: twinchat's event files; online-retail: UCI Online Retail purchase lines (auto: by header)",
    )
    p.add_argument(
        "--per", choices=["invoice", "line"], default="invoice", help="online-retail: one event per ..."
    )
    p.add_argument("--customers", type=int, help="online-retail: only the N customers with the most invoices")
    p.add_argument("--report", type=Path, help="write the full ingestion report as JSON to this file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_ingest)

    p = sub.add_parser(
        "import",
        help="import a source declared by a mapping file (shipped: online_retail, gss, twin2k_profile, ...)",
        description="Import files with a mapping: which column is the customer, which identify them, how rows "
        "become events. A shipped mapping by name, or your own YAML (see README, 'Importing data'). Prints and "
        "keeps a data-quality report under TWINCHAT_HOME/imports.",
    )
    p.add_argument(
        "mapping", metavar="MAPPING", help="a shipped mapping's name or a mapping file; 'list' lists them"
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    p.add_argument("--panel", help="put every twin touched into this panel")
    p.add_argument(
        "--identity-map",
        type=Path,
        metavar="CSV",
        help="a CSV whose columns are identifier kinds (customer_id, email, phone): each row is one person",
    )
    p.add_argument("--customers", type=int, help="only the N customers with the most events")
    p.add_argument("--report", type=Path, help="also write the data-quality report (JSON) to this file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_import)

    p = sub.add_parser("twins", help="list twins")
    p.add_argument("--panel", help="only twins of this panel")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_twins)

    p = sub.add_parser("ask", help="ask a twin a question; it answers as the customer would (simulated)")
    p.add_argument("twin_id", metavar="TWIN_ID")
    p.add_argument("question", metavar="QUESTION")
    p.add_argument("--json", action="store_true", help="print answer, citations and labels as JSON")
    p.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    _purpose_option(p)
    p.set_defaults(run=_ask)

    p = sub.add_parser("panels", help="list panels, or add twins to a panel and remove them")
    p.add_argument("panel", nargs="?", metavar="PANEL")
    p.add_argument("--add", help="comma-separated twin ids to put into PANEL")
    p.add_argument("--remove", help="comma-separated twin ids to take out of PANEL")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_panels)

    p = sub.add_parser("chat", help="a conversation with a twin that remembers what was said (simulated)")
    p.add_argument("twin_id", metavar="TWIN_ID")
    p.add_argument("--session", help="continue this session (its id is printed when one starts)")
    p.add_argument(
        "--message", "-m", help="send one message and exit, instead of an interactive conversation"
    )
    p.add_argument("--json", action="store_true", help="with --message: print the answer and session as JSON")
    _purpose_option(p)
    p.set_defaults(run=_chat)

    p = sub.add_parser(
        "survey", help="run a questionnaire over a panel or a list of twins (simulated answers)"
    )
    p.add_argument(
        "questions", type=Path, metavar="QUESTIONS.json", help='a list of {"id", "text", "options"?}'
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--panel", help="every twin of this panel")
    who.add_argument("--twins", help="comma-separated twin ids")
    p.add_argument("--out", type=Path, required=True, help="results: JSON, or CSV when the name ends in .csv")
    _purpose_option(p)
    p.set_defaults(run=_survey)

    p = sub.add_parser(
        "eval",
        help="evaluations: fidelity, twin2k, grounding, corrections (evals/, BENCHMARKS.md)",
        description="Run one evaluation; it writes results.json, results.csv, report.md and its figures "
        "into --out (default evals/results/NAME, or NAME-quick with --quick).",
    )
    evals = p.add_subparsers(dest="evaluation", metavar="NAME", required=True)
    from evals import evaluators

    for name, evaluator in evaluators().items():
        e = evals.add_parser(name, help=f"{evaluator.title} ({evaluator.protocol})")
        evaluator.add_arguments(e)
        own = {action.dest for action in e._actions} - {"help"}
        e.add_argument("--seed", type=int, default=0)
        quick = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in evaluator.quick_options().items())
        e.add_argument("--quick", action="store_true", help=f"the small run CI makes ({quick})")
        e.add_argument("--out", type=Path, help="results folder (default evals/results/NAME[-quick])")
        e.set_defaults(run=_eval, evaluator=evaluator, evaluator_options=sorted(own) + ["seed"])

    p = sub.add_parser(
        "bench",
        help="speed and scale benchmarks: ingest, retrieval, answer, survey, startup (benchmarks/)",
        description="Measure one benchmark of BENCHMARKS.md section 4 and write its figures, configuration, "
        "machine, date, commit and in-run reference to --out (JSON). On a busy machine (1-minute load average "
        "above 1.5) it waits up to 10 minutes first. `all` runs each in its own process.",
    )
    from benchmarks import BENCHMARKS

    p.add_argument("benchmark", choices=[*BENCHMARKS, "all"])
    p.add_argument(
        "--out",
        type=Path,
        help="results file (default benchmarks/results/NAME[-quick].json); for all, a folder for one file each",
    )
    p.add_argument("--quick", action="store_true", help="a small size that runs in well under a minute")
    p.add_argument("--no-wait", action="store_true", help="measure at once, however busy the machine")
    p.set_defaults(run=_bench)

    p = sub.add_parser("show", help="what a twin knows: its profile of derived facts and persona summary")
    p.add_argument("twin_id", metavar="TWIN_ID")
    p.add_argument(
        "--json", action="store_true", help='print {"twin", "profile", "summary", "predictions"} as JSON'
    )
    p.set_defaults(run=_show)

    p = sub.add_parser("predict", help="behaviour predictions: fit the customer-lifetime model on a panel")
    predict = p.add_subparsers(dest="predict_command", metavar="ACTION", required=True)
    k = predict.add_parser("fit", help="fit BG/NBD on every real twin's purchases, or one panel's")
    k.add_argument("--panel", help="fit on this panel; its twins are predicted with this fit")
    k.add_argument("--json", action="store_true")
    k.set_defaults(run=_predict_fit)

    p = sub.add_parser(
        "simulate",
        help="test a campaign's variants on a panel's twins: response rates, segments, A/B (simulated)",
    )
    p.add_argument("campaign", type=Path, metavar="CAMPAIGN.yaml", help="see examples/campaign.yaml")
    p.add_argument("--panel", help="the panel to test on (else the campaign file's panel)")
    p.add_argument("--out", type=Path, required=True, help="folder for results.json, report.md and chart.png")
    p.set_defaults(run=_simulate)

    p = sub.add_parser("memories", help="what a twin knows about its customer: memories, sources, validity")
    p.add_argument("twin_id", metavar="TWIN_ID")
    p.add_argument("--search", help="only memories about this")
    p.add_argument("--valid-only", action="store_true", help="leave out superseded memories")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_memories)

    p = sub.add_parser(
        "correct", help="the customer corrects their twin: the statement supersedes what it contradicts"
    )
    p.add_argument("twin_id", metavar="TWIN_ID")
    p.add_argument("statement", metavar="STATEMENT")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_correct)

    p = sub.add_parser("forget", help="remove one memory of a twin, at its customer's request")
    p.add_argument("twin_id", metavar="TWIN_ID")
    p.add_argument("event_id", metavar="EVENT_ID")
    p.set_defaults(run=_forget)

    p = sub.add_parser("consent", help="show, grant or withdraw a customer's consent per purpose")
    p.add_argument("twin_id", metavar="TWIN_ID")
    p.add_argument("--purpose", choices=["research", "product", "marketing"])
    decision = p.add_mutually_exclusive_group()
    decision.add_argument("--grant", action="store_true")
    decision.add_argument("--deny", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_consent)

    p = sub.add_parser("export", help="everything held about a customer, as JSON")
    p.add_argument("twin_id", metavar="TWIN_ID")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.json")
    p.set_defaults(run=_export)

    p = sub.add_parser(
        "erase", help="erase a customer: events, memories, metadata, caches (audit keeps a tombstone)"
    )
    p.add_argument("twin_id", metavar="TWIN_ID")
    p.add_argument("--yes", action="store_true", help="confirm: erasure cannot be undone")
    p.set_defaults(run=_erase)

    p = sub.add_parser("audit", help="the audit trail: every use of and change to twins")
    p.add_argument("--twin", help="only entries about this twin")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_audit)

    p = sub.add_parser("keys", help="API keys: create (shown once), list, revoke")
    keys = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    k = keys.add_parser("create", help="a new key; it is printed once and stored only as a digest")
    k.add_argument("--role", required=True, choices=["admin", "researcher", "product", "customer"])
    k.add_argument("--twin", help="the customer's own twin (customer keys only)")
    k.add_argument("--label", default="", help="what the key is for, to recognise it later")
    k.add_argument("--json", action="store_true")
    k.set_defaults(run=_keys_create)
    k = keys.add_parser("list", help="every key: id, role, twin, label, created, revoked")
    k.add_argument("--json", action="store_true")
    k.set_defaults(run=_keys_list)
    k = keys.add_parser("revoke", help="revoke a key: requests with it are refused from now on")
    k.add_argument("key_id", metavar="KEY_ID")
    k.set_defaults(run=_keys_revoke)

    p = sub.add_parser("store", help="the vector store: its layout, and moving it to the other layout")
    store = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    s = store.add_parser("info", help="layout, shards, collections, twins and events of the store")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=_store_info)
    s = store.add_parser(
        "migrate",
        help="move the store to another layout, copying embeddings (safe to run again if stopped)",
    )
    s.add_argument("--to", required=True, choices=["per-twin", "sharded"], help="the layout to move to")
    s.add_argument(
        "--shards", type=int, help="collections of the sharded layout (default TWINCHAT_STORE_SHARDS)"
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(run=_store_migrate)
    s = store.add_parser(
        "compact",
        help="rebuild every collection without what Chroma only marked deleted (forgotten memories, erased "
        "twins on a server), then scrub an embedded store's folder; stop the API first",
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(run=_store_compact)
    s = store.add_parser(
        "scrub",
        help="remove from a Chroma server's folder the bytes deleted collections and records leave behind "
        "(on the server's machine, with the server stopped)",
    )
    s.add_argument(
        "--path", required=True, type=Path, help="the folder the server runs on (chroma run --path)"
    )
    s.set_defaults(run=_store_scrub)

    p = sub.add_parser("serve", help="serve the HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes on the port (more than 1 needs TWINCHAT_STORE=chroma+http://...; serves no UI)",
    )
    p.set_defaults(run=_serve)

    p = sub.add_parser("ui", help="serve only the research studio (/studio) and customer portal (/portal)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.set_defaults(run=_ui)

    p = sub.add_parser("synth", help="generate a panel of synthetic customers (labelled synthetic)")
    p.add_argument("--n", type=int, required=True, help="how many synthetic customers")
    p.add_argument("--seed", type=int, required=True, help="the same seed gives the same population")
    p.add_argument("--panel", required=True, help="put the synthetic twins into this panel")
    p.add_argument(
        "--spec", type=Path, help="population spec YAML (default: twinchat/domain/synth_default.yaml)"
    )
    p.add_argument(
        "--data",
        type=Path,
        help="Online Retail CSV to calibrate on (default: TWINCHAT_DATA_DIR/online_retail/...)",
    )
    p.add_argument("--report", type=Path, help="write the ingestion and privacy report as JSON to this file")
    p.set_defaults(run=_synth)

    p = sub.add_parser("demo", help="build demo twins from the Online Retail sample, then serve them")
    p.add_argument(
        "--customers", type=int, default=60, help="how many of the most active customers to import"
    )
    p.add_argument(
        "--data", type=Path, help="the Online Retail CSV (default: TWINCHAT_DATA_DIR/online_retail/...)"
    )
    p.add_argument(
        "--synthetic",
        type=int,
        default=20,
        metavar="N",
        help=f"also N synthetic customers in panel '{SYNTHETIC_DEMO_PANEL}' (seed 0; 0: none)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-serve", action="store_true", help="build the twins and stop")
    p.set_defaults(run=_demo)
    return parser


def _settings() -> Settings:
    from twinchat.config import Settings

    return Settings()


def _service(settings: Settings | None = None) -> TwinService:
    from twinchat.services import TwinService

    return TwinService.from_settings(settings or _settings())


def _ingest(args: argparse.Namespace) -> int:
    from twinchat.importers.online_retail import OnlineRetailImport, looks_like_online_retail
    from twinchat.services import IngestReport

    service = _service()
    report = IngestReport()
    skipped: dict[str, int] = {}
    for path in args.paths:
        retail = args.format == "online-retail" or (args.format == "auto" and looks_like_online_retail(path))
        if not retail:
            part = service.ingest_files([path], source=args.source, panel=args.panel)
            _merge(report, part)
            continue
        importer = OnlineRetailImport(path, per=args.per, customers=args.customers)
        from twinchat.domain.readers import UnreadableInput

        try:
            service.ingest_records(
                importer.records(), panel=args.panel, report=report, progress=True, label=path.name
            )
        except UnreadableInput as exc:
            report.unreadable.append(str(exc))
        for reason, n in importer.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
    _print_report(report, skipped, as_json=args.json)
    if args.report:
        args.report.write_text(json.dumps({**report.to_dict(), "skipped": skipped}, indent=2))
    return report.exit_code


def _import(args: argparse.Namespace) -> int:
    from twinchat.importers.mapping import MappedImport, load_mapping, shipped_mappings
    from twinchat.importers.quality import summary_lines

    if args.mapping == "list":
        for name, path in shipped_mappings().items():
            print(f"{name:22} {load_mapping(path).description}")
        return 0
    if not args.paths:
        print("twinchat: error: import needs at least one PATH to read", file=sys.stderr)
        return 2
    mapping = load_mapping(args.mapping)
    importer = MappedImport(mapping, args.paths, identity_map=args.identity_map, customers=args.customers)
    report = _service().import_mapped(importer, panel=args.panel, progress=not args.json)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for line in summary_lines(report):
            print(line)
        for message in report["unreadable"]:
            print(f"unreadable {message}", file=sys.stderr)
        print(f"report: {report['saved_to']}")
    return int(report["exit_code"])


def _merge(into: IngestReport, part: IngestReport) -> None:
    into.rows_read += part.rows_read
    into.stored += part.stored
    into.duplicates += part.duplicates
    into.rejected.extend(part.rejected)
    into.unreadable.extend(part.unreadable)
    into.twins_touched |= part.twins_touched
    into.new_twins |= part.new_twins


def _print_report(report: IngestReport, skipped: dict[str, int], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**report.to_dict(), "skipped": skipped}, indent=2))
        return
    print(
        f"read {report.rows_read} rows: stored {report.stored} new events, {report.duplicates} already stored, "
        f"{len(report.rejected)} rejected; {len(report.twins_touched)} twins touched ({len(report.new_twins)} new)"
    )
    for reason, n in skipped.items():
        print(f"skipped {n} rows: {reason}")
    for problem in report.rejected[:MAX_PROBLEMS_SHOWN]:
        print(f"rejected {problem}", file=sys.stderr)
    if len(report.rejected) > MAX_PROBLEMS_SHOWN:
        print(
            f"... and {len(report.rejected) - MAX_PROBLEMS_SHOWN} more (--report FILE lists all)",
            file=sys.stderr,
        )
    for message in report.unreadable:
        print(f"unreadable {message}", file=sys.stderr)


def _synth(args: argparse.Namespace) -> int:
    outcome = _synthesize(
        _service(), n=args.n, seed=args.seed, panel=args.panel, spec=args.spec, data=args.data
    )
    if args.report:
        args.report.write_text(json.dumps(outcome, indent=2))
    return int(outcome["ingest"]["exit_code"])


def _synthesize(
    service: TwinService, *, n: int, seed: int, panel: str, spec: Path | None = None, data: Path | None = None
) -> dict:
    """Generate a synthetic population, check it against the real customers, store it; print and return what
    happened (the ingestion and privacy reports)."""
    import time

    from twinchat.domain.readers import RawRecord
    from twinchat.synth.catalogue import read_catalogue
    from twinchat.synth.population import generate, records
    from twinchat.synth.privacy import nearest_neighbours
    from twinchat.synth.spec import load_spec

    settings = service.settings
    started = time.perf_counter()
    population = load_spec(spec)
    catalogue = read_catalogue(data or settings.data_dir / "online_retail" / "online_retail_sample.csv")
    reword = None
    if settings.synth_wording == "llm" or (
        settings.synth_wording == "auto" and settings.llm.startswith("openai:")
    ):
        from twinchat.domain.prompts import load_prompt
        from twinchat.synth.population import llm_reword

        model = service.chat_model
        prompt = load_prompt(settings.prompts_dir, "synth_reword", required=("system", "user"))
        reword = llm_reword(
            lambda messages: model.complete(messages, max_tokens=120, temperature=0.0), prompt
        )
        print(f"wording: reviews and tickets reworded by {settings.llm} (facts from the seed)")
    customers = generate(population, catalogue, n=n, seed=seed, reword=reword)
    privacy = nearest_neighbours({c.twin_id: c.baskets for c in customers}, catalogue.real_histories).check()
    generated = time.perf_counter() - started
    rows = [RawRecord(f"synth:seed={seed}", i + 1, r) for i, r in enumerate(records(customers))]
    report = service.ingest_records(
        rows, panel=panel, synthetic=True, progress=True, total=len(rows), label="synthetic"
    )
    _print_report(report, {}, as_json=False)
    print(
        f"generated {len(customers)} synthetic customers, {len(rows)} events in {generated:.1f}s "
        f"(spec {population.path}, seed {seed}); panel {panel}"
    )
    print(privacy.summary())
    return {
        "seed": seed,
        "spec": population.path,
        "spec_version": population.version,
        "calibrated_on": catalogue.source,
        "ingest": report.to_dict(),
        "privacy": privacy.to_dict(),
    }


def _twins(args: argparse.Namespace) -> int:
    twins = _service().twins(panel=args.panel)
    if args.json:
        print(json.dumps([t.to_dict() for t in twins], indent=2))
        return 0
    if not twins:
        print("no twins yet: `twinchat ingest FILE` or `twinchat demo` creates some")
    for t in twins:
        panels = f"  panels: {', '.join(t.panels)}" if t.panels else ""
        label = "  [synthetic]" if t.synthetic else ""
        print(f"{t.twin_id}\t{t.n_events} events{panels}{label}")
    return 0


def _ask(args: argparse.Namespace) -> int:
    from twinchat.domain.models import Answer

    service = _service()
    if args.json:
        reply = service.ask(args.twin_id, args.question, use=_use(args))
        print(json.dumps(reply.to_dict(), indent=2, ensure_ascii=False))
        return 0
    answer: Answer | None = None
    for part in service.ask_stream(args.twin_id, args.question, use=_use(args)):
        if isinstance(part, Answer):
            answer = part
        elif args.stream:
            print(part, end="", flush=True)
    assert answer is not None
    print("\n" if args.stream else answer.answer)
    print(f"\n[simulated answer of twin {answer.twin_id}, model {answer.model}]")
    if answer.abstained:
        print("no event in this customer's history is relevant to the question")
    for c in answer.citations:
        print(f"  {c.event_id}  ({c.score:.2f})  {_clip(c.text, 100)}")
    return 0


def _panels(args: argparse.Namespace) -> int:
    service = _service()
    if args.add or args.remove:
        if not args.panel:
            raise ValueError("name the PANEL to change: twinchat panels PANEL --add ID,ID")
        split = lambda text: [t.strip() for t in (text or "").split(",") if t.strip()]  # noqa: E731
        service.set_panel(args.panel, add=split(args.add), remove=split(args.remove))
    panels = service.panels()
    if args.panel:
        panels = {args.panel: panels.get(args.panel, 0)}
    if args.json:
        print(json.dumps(panels, indent=2))
    else:
        for name, n in panels.items():
            print(f"{name}\t{n} twins")
    return 0


def _chat(args: argparse.Namespace) -> int:
    from twinchat.domain.models import Answer

    service = _service()
    session = service.session(args.session) if args.session else service.start_session(args.twin_id)
    if session.twin_id != args.twin_id:
        raise ValueError(
            f"session {session.session_id} belongs to twin {session.twin_id}, not {args.twin_id}"
        )
    if args.message is not None:
        answer = service.chat(session.session_id, args.message, use=_use(args))
        if args.json:
            print(
                json.dumps(
                    {**answer.to_dict(), "session_id": session.session_id}, indent=2, ensure_ascii=False
                )
            )
        else:
            print(answer.answer)
            print(f"[session {session.session_id}; simulated]")
        return 0
    print(
        f"session {session.session_id} with twin {args.twin_id}; answers are simulated. Empty line or Ctrl-D ends."
    )
    while True:
        try:
            message = input("you> ").strip()
        except EOFError:
            break
        if not message:
            break
        print("twin> ", end="", flush=True)
        for part in service.chat_stream(session.session_id, message, use=_use(args)):
            if isinstance(part, Answer):
                cited = ", ".join(c.event_id for c in part.citations) or "none (history does not say)"
                print(f"\n      [evidence: {cited}]")
            else:
                print(part, end="", flush=True)
    print(f"resume with: twinchat chat {args.twin_id} --session {session.session_id}")
    return 0


def _survey(args: argparse.Namespace) -> int:
    from twinchat.domain.survey import Question, QuestionError

    try:
        data = json.loads(args.questions.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"twinchat: error: {args.questions}: cannot read the questions ({exc})", file=sys.stderr)
        return 2
    if not isinstance(data, list) or not data:
        print(
            f"twinchat: error: {args.questions}: expected a non-empty JSON list of questions", file=sys.stderr
        )
        return 2
    try:
        questions = [Question.from_dict(q, index=i) for i, q in enumerate(data)]
    except QuestionError as exc:
        print(f"twinchat: error: {args.questions}: {exc}", file=sys.stderr)
        return 2
    service = _service()
    twin_ids = [t.twin_id for t in service.twins(panel=args.panel)] if args.panel else args.twins.split(",")
    if not twin_ids:
        print(f"twinchat: error: panel {args.panel!r} has no twins", file=sys.stderr)
        return 1
    refused: list[str] = []
    records = list(
        service.survey(
            questions,
            [t.strip() for t in twin_ids if t.strip()],
            progress=True,
            use=_use(args),
            refused=refused if args.panel else None,
        )
    )
    for reason in refused:
        print(f"left out: {reason}", file=sys.stderr)
    _write_records(args.out, records)
    print(
        f"{len(records)} simulated answers of {len(twin_ids)} twins to {len(questions)} questions -> {args.out}"
    )
    return 0


def _write_records(out: Path, records: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() != ".csv":
        out.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    from twinchat.jobs import records_csv  # the same columns as the API's CSV download

    with out.open("w", newline="", encoding="utf-8") as handle:
        handle.writelines(records_csv(json.dumps(r, ensure_ascii=False) for r in records))


def _eval(args: argparse.Namespace) -> int:
    from evals.core import evaluate

    options = {k: getattr(args, k) for k in args.evaluator_options}
    if args.quick:
        options.update(args.evaluator.quick_options())
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None}
    name = args.evaluator.name
    out = args.out or Path("evals/results") / (f"{name}-quick" if args.quick else name)
    result = evaluate(args.evaluator(**options), out, _settings())
    from evals.report import flatten

    flat = dict(flatten(result["summary"]))
    print(json.dumps({k: flat[k] for k in result["headline"] if k in flat}, indent=2))
    if result["failures"]:
        print(f"{len(result['failures'])} metric failures, listed in {out / 'report.md'}")
    print(f"wrote {out / 'results.json'}, {out / 'results.csv'} and {out / 'report.md'}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import subprocess

    from benchmarks import BENCHMARKS
    from benchmarks.core import headline, measure

    suffix = "-quick" if args.quick else ""
    if args.benchmark != "all":
        out = args.out or Path("benchmarks/results") / f"{args.benchmark}{suffix}.json"
        results = measure(args.benchmark, out, quick=args.quick, wait=not args.no_wait)
        print(json.dumps(headline(results), indent=2))
        print(f"wrote {out}")
        return 0
    folder = args.out or Path("benchmarks/results")
    failed = []
    for name in BENCHMARKS:
        # Each in a process of its own: its memory figures are its own, and no model stays loaded between them.
        out = folder / f"{name}{suffix}.json"
        command = [sys.executable, "-m", "twinchat.cli", "bench", name, "--out", str(out)]
        command += ["--quick"] * args.quick + ["--no-wait"] * args.no_wait
        print(f"twinchat bench {name} ...", file=sys.stderr, flush=True)
        if subprocess.run(command).returncode != 0:
            failed.append(name)
    if failed:
        print(f"twinchat: error: benchmarks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _show(args: argparse.Namespace) -> int:
    from twinchat.domain.control import ConsentDenied
    from twinchat.domain.profile import show_document

    service = _service()
    document = show_document(
        service.twin(args.twin_id), service.profile(args.twin_id), service.identifiers(args.twin_id)
    )
    try:  # predictions are a marketing use: the rest of the document is shown without them
        document["predictions"] = service.predictions(args.twin_id, use=_use(args, "marketing"))
    except ConsentDenied as exc:
        document["predictions"] = {"available": False, "refused": str(exc), "simulated": True}
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        _print_profile(document)
        _print_predictions(document["predictions"])
    return 0


def _print_profile(document: dict) -> None:
    twin, facts = document["twin"], document["profile"]
    panels = f", panels: {', '.join(twin['panels'])}" if twin["panels"] else ""
    print(f"twin {twin['twin_id']} ({twin['n_events']} events{panels})")
    if twin.get("identifiers"):
        print("identifiers " + ", ".join(f"{i['kind']} {i['value']}" for i in twin["identifiers"]))
    print()
    print(f"{document['summary']}\n")
    events = facts["events"]
    sources = ", ".join(f"{source} {n}" for source, n in events["by_source"].items())
    span = f"{events['first'] or 'undated'} to {events['last'] or 'undated'}"
    print(f"events      {events['count']}, {span}: {sources}")
    buys = facts["purchases"]
    if buys["orders"] or buys["cancellations"]:

        def money(x: float) -> str:
            return f"{x:,.2f}" + (f" {buys['currency']}" if buys["currency"] else "")

        aov = buys["average_order_value"]
        span = f"{buys['first'] or 'undated'} to {buys['last'] or 'undated'}"
        average = f", average {money(aov)}" if aov is not None else ""
        print(f"purchases   {buys['orders']} orders, {span}, spend {money(buys['spend'])}{average}")
        if buys["cancellations"]:
            print(f"            {buys['cancellations']} cancellations ({money(buys['cancelled_value'])})")
        rfm = buys["rfm"]
        recency = "unknown" if rfm["recency_days"] is None else f"{rfm['recency_days']} days"
        print(
            f"rfm         recency {recency} (before {rfm['reference_date']}), "
            f"frequency {rfm['frequency']}, monetary {money(rfm['monetary'])}"
        )
        categories = buys["favourite_categories"]
        print("categories  " + ", ".join(f"{c['category']} {c['count']}" for c in categories))
        print("countries   " + ", ".join(f"{country} {n}" for country, n in buys["countries"].items()))
        print("favourites")
        for item in buys["favourite_products"]:
            print(f"  {item['count']:>4}  {item['product']}")
    surveys = facts["surveys"]
    if surveys["answers"]:
        print(f"surveys     {surveys['answers']} answers")
        for a in surveys["latest"]:
            print(f"  {a['date'] or 'undated':10}  {_clip(a['question'], 60)} -> {_clip(a['answer'], 40)}")
        for a in surveys["statements"]:
            print(f"  {a['date'] or 'undated':10}  {_clip(a['text'], 100)}")
    reviews = facts["reviews"]
    if reviews["count"]:
        average = reviews["average_rating"]
        rating = f" (average rating {average})" if average is not None else ""
        print(f"reviews     {reviews['count']}{rating}")
        for r in reviews["latest"]:
            stars = f"[{r['rating']:g}] " if r["rating"] is not None else ""
            print(f"  {r['date'] or 'undated':10}  {stars}{_clip(r['text'], 90)}")
    support = facts["support"]
    if support["issues"]:
        print(f"support     {support['issues']} issues")
        for item in support["latest"]:
            print(f"  {item['date'] or 'undated':10}  {_clip(item['subject'], 90)}")


def _print_predictions(p: dict) -> None:
    print()
    if not p.get("available"):
        print(f"predictions {p.get('refused') or p.get('reason')}")
        return
    churn, conf, ev = p["churn_risk"], p["confidence"], p["evidence"]
    fitted = p["fitted_on"]
    print(
        f"predictions (simulated, {p['model']} fitted on {fitted['customers']} customers, as of {p['as_of']})"
    )
    interval = conf.get("p_buy_again_90")
    around = f" (90% {interval[0]:.2f}-{interval[1]:.2f})" if interval else ""
    print(f"  buys again in {p['horizon_days']} days   {p['p_buy_again_90d']:.2f}{around}")
    print(f"  expected purchases       {p['expected_purchases_90d']:.2f}")
    print(f"  churn risk               {churn['value']:.2f} ({churn['level']})")
    print(f"  confidence               {conf['level']}: {conf['basis']}")
    print(
        f"  evidence                 {ev['purchase_days']} purchase days, {ev['first_purchase']} to "
        f"{ev['last_purchase']}"
    )
    trends = p["category_trends"]
    if not trends["available"]:
        print(f"  interest drift           {trends['reason']}")
        return
    print(
        f"  interest drift           older {trends['earlier']['days']} days vs newer {trends['recent']['days']}"
    )
    for c in trends["categories"]:
        print(f"    {c['trend']:7}  {c['category']} ({c['earlier']} -> {c['recent']} days)")


def _predict_fit(args: argparse.Namespace) -> int:
    fit = _service().fit_lifetime(panel=args.panel, progress=True, use=_use(args, "marketing"))
    if args.json:
        print(json.dumps(fit.to_dict(), indent=2))
        return 0
    params = ", ".join(f"{k} {v:.4g}" for k, v in fit.params.items())
    print(
        f"fitted {fit.model} on {fit.customers} customers ({fit.repeaters} bought again), "
        f"{fit.observed_from} to {fit.observed_until}: {params}"
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from twinchat.domain.campaign import Campaign, CampaignError

    try:
        campaign = Campaign.from_file(args.campaign)
    except CampaignError as exc:
        print(f"twinchat: error: {exc}", file=sys.stderr)
        return 2
    panel = args.panel or campaign.panel
    if not panel:
        print(
            f"twinchat: error: {args.campaign}: panel: name the panel here or with --panel", file=sys.stderr
        )
        return 2
    service = _service()
    twin_ids = [t.twin_id for t in service.twins(panel=panel)]
    if not twin_ids:
        print(
            f"twinchat: error: panel {panel!r} has no twins (`twinchat panels` lists them)", file=sys.stderr
        )
        return 1
    from dataclasses import replace

    from twinchat.simulation_files import summary_lines, write_simulation

    document = service.simulate(
        replace(campaign, panel=panel), twin_ids, progress=True, use=_use(args, "marketing")
    )
    for refusal in document["refused"]:
        print(f"left out: {refusal['reason']}", file=sys.stderr)
    paths = write_simulation(document, args.out)
    print("\n".join(summary_lines(document)))
    print(f"-> {', '.join(str(p) for p in paths)}")
    return 0


def _purpose_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--purpose",
        default="research",
        choices=["research", "product", "marketing", "self"],
        help="why the twin is used; checked against the customer's consent (self: the customer themself)",
    )


def _use(args: argparse.Namespace, purpose: str | None = None) -> Use:
    from twinchat.domain.control import Use

    chosen: str = purpose or getattr(args, "purpose", None) or "research"
    return Use(f"local:{getpass.getuser()}", chosen)


def _memories(args: argparse.Namespace) -> int:
    rows = _service().memories(
        args.twin_id, search=args.search, include_invalid=not args.valid_only, use=_use(args, "self")
    )
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no memories" + (f" about {args.search!r}" if args.search else ""))
    for row in rows:
        status = row.get("status") or {}
        since = str(status.get("invalid_since", ""))[:10]
        mark = "" if row["valid"] else f"  [{status.get('state', 'invalid')} {since}]"
        when = row.get("timestamp", "undated")[:10]
        print(f"{row['event_id']}  {when}  {row['source']:<10} {_clip(row['text'], 90)}{mark}")
    return 0


def _correct(args: argparse.Namespace) -> int:
    result = _service().correct(args.twin_id, args.statement, use=_use(args, "self"))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(f"stored correction {result.event_id}")
    for event_id in result.superseded:
        print(f"  supersedes {event_id}")
    if result.survey is not None:
        print(f"  answers survey question {result.survey.key}: {result.survey.answer}")
    if not result.superseded:
        print("  it contradicts nothing the twin held; kept as a new fact")
    return 0


def _forget(args: argparse.Namespace) -> int:
    _service().forget(args.twin_id, args.event_id, use=_use(args, "self"))
    print(f"forgot {args.event_id}; the audit keeps when and by whom, not what")
    return 0


def _consent(args: argparse.Namespace) -> int:
    service = _service()
    if args.grant or args.deny:
        if not args.purpose:
            raise ValueError("--purpose is required with --grant or --deny")
        service.set_consent(args.twin_id, args.purpose, args.grant, use=_use(args, "self"))
    consents = service.consents(args.twin_id)
    if args.json:
        print(json.dumps({p: c.to_dict() if c else None for p, c in consents.items()}, indent=2))
        return 0
    for purpose, consent in consents.items():
        state = "not granted" if consent is None else "granted" if consent.granted else "withdrawn"
        since = f" since {consent.updated_at:%Y-%m-%d %H:%M} by {consent.updated_by}" if consent else ""
        print(f"{purpose:<10} {state}{since}")
    return 0


def _export(args: argparse.Namespace) -> int:
    data = _service().export(args.twin_id, use=_use(args, "self"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"exported {len(data['events'])} events, {len(data['audit'])} audit entries -> {args.out}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    if not args.yes:
        print(f"twinchat: erasing {args.twin_id} cannot be undone; add --yes to confirm", file=sys.stderr)
        return 2
    tombstone = _service().erase(args.twin_id, use=_use(args, "self"))
    print(f"erased {args.twin_id}; the audit refers to it as {tombstone}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    entries = _service().audit(twin_id=args.twin, limit=args.limit)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return 0
    for e in entries:
        evidence = f" evidence={','.join(e.evidence)}" if e.evidence else ""
        print(
            f"{e.at:%Y-%m-%d %H:%M:%S} {e.actor:<14} {e.action:<8} {e.twin_id} purpose={e.purpose}{evidence}"
        )
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    key, secret = _service().create_key(
        args.role, twin_id=args.twin, label=args.label, use=_use(args, "admin")
    )
    if args.json:
        print(json.dumps({**key.to_dict(), "key": secret}, indent=2))
        return 0
    print(secret)
    bound = f" for twin {key.twin_id}" if key.twin_id else ""
    print(
        f"key {key.key_id}: {key.role}{bound}. It is shown this once; send it as 'Authorization: Bearer KEY'.",
        file=sys.stderr,
    )
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    keys = _service().keys.list_keys()
    if args.json:
        print(json.dumps([k.to_dict() for k in keys], indent=2))
        return 0
    if not keys:
        print("no keys yet: `twinchat keys create --role ROLE` makes one")
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        print(
            f"{k.key_id}  {k.role:<10} {k.twin_id or '-':<12} {state:<18} {k.created_at:%Y-%m-%d}  {k.label}"
        )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    _service().revoke_key(args.key_id, use=_use(args, "admin"))
    print(f"revoked {args.key_id}")
    return 0


def _store_info(args: argparse.Namespace) -> int:
    from twinchat.adapters.chroma_migrate import store_info
    from twinchat.adapters.chroma_store import layout_mismatch
    from twinchat.factory import make_store_client

    settings = _settings()
    info = store_info(make_store_client(settings))
    if args.json:
        print(json.dumps({"store": settings.store_spec, **info.to_dict()}, indent=2))
        return 0
    shards = f" ({info.shards} shards)" if info.layout == "sharded" else ""
    print(f"store {settings.store_spec}: {info.layout}{shards}")
    print(f"{info.collections} collections, {info.twins} twins, {info.events} events")
    if info.leftovers:
        print(
            f"{len(info.leftovers)} collections left by an unfinished migration: run it again to remove them"
        )
    configured = (settings.store_layout, settings.store_shards if settings.store_layout == "sharded" else 0)
    if settings.store_layout != "auto" and (info.layout, info.shards) != configured:
        print(f"note: {layout_mismatch((info.layout, info.shards), configured)}", file=sys.stderr)
    return 0


def _store_migrate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from twinchat.adapters.chroma_migrate import migrate, store_info
    from twinchat.factory import make_store_client

    settings = _settings()
    shards = args.shards or settings.store_shards
    client = make_store_client(settings)
    before = store_info(client)
    with tqdm(total=before.collections, unit="collection", disable=args.json, file=sys.stderr) as bar:
        report = migrate(client, to=args.to, shards=shards, progress=lambda name, n: bar.update(1))
    env = f"TWINCHAT_STORE_LAYOUT={report.target}" + (
        f" TWINCHAT_STORE_SHARDS={report.target_shards}" if report.target == "sharded" else ""
    )
    if args.json:
        print(json.dumps({"store": settings.store_spec, **report.to_dict(), "set": env}, indent=2))
        return 0

    def layout(name: str, n: int) -> str:
        return f"sharded ({n} shards)" if name == "sharded" else name

    target = layout(report.target, report.target_shards)
    if report.already:
        print(f"the store is already {target}: {report.twins} twins, {report.events} events")
    else:
        print(
            f"moved {report.twins} twins and {report.events} events from "
            f"{layout(report.source, report.source_shards)} to {target}: {report.copied} records copied with "
            "their embeddings, every twin's count verified"
        )
    if report.removed:
        print(f"removed {len(report.removed)} collections of the old layout")
    if settings.store_layout == "auto":
        print("TWINCHAT_STORE_LAYOUT=auto (the default) opens the store as it now is: nothing to set")
    else:
        print(f"from now on set {env}")
    return 0


def _store_compact(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from twinchat.adapters.chroma_migrate import compact, store_info
    from twinchat.factory import make_store_client

    settings = _settings()
    client = make_store_client(settings)
    with tqdm(
        total=store_info(client).collections, unit="collection", disable=args.json, file=sys.stderr
    ) as bar:
        report = compact(client, progress=lambda name, n: bar.update(1))
    if args.json:
        print(json.dumps({"store": settings.store_spec, **report.to_dict()}, indent=2))
        return 0
    print(f"rebuilt {report.collections} collections ({report.records} records, embeddings copied)")
    if report.scrubbed:
        print(f"scrubbed {report.scrubbed}: no deleted record's bytes are left in it")
    else:
        print(
            "the Chroma server keeps the old collections' files: on its machine, with it stopped, run "
            "`twinchat store scrub --path <the folder of chroma run --path>`"
        )
    return 0


def _store_scrub(args: argparse.Namespace) -> int:
    from twinchat.adapters.chroma_store import scrub

    database = args.path / "chroma.sqlite3"
    if not database.is_file():
        print(
            f"twinchat: error: {args.path} is not a Chroma folder (no chroma.sqlite3 in it)", file=sys.stderr
        )
        return 2
    scrub(args.path)
    print(f"scrubbed {args.path}: no deleted collection's or record's bytes are left in it")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from twinchat.api.app import check_workers, serve

    settings = _settings()
    try:
        check_workers(settings, args.workers)
    except ValueError as exc:
        print(f"twinchat: error: {exc}", file=sys.stderr)
        return 2
    # With several workers each builds its own service; this process only supervises them.
    service = _service(settings) if args.workers == 1 else None
    keys = service.keys if service is not None else _keys_only(settings)
    if not any(k.active for k in keys.list_keys()):
        print(
            "no API keys yet: every request will get 401; `twinchat keys create --role ROLE` makes one",
            file=sys.stderr,
        )
    serve(settings, host=args.host, port=args.port, service=service, workers=args.workers)
    return 0


def _keys_only(settings: Settings) -> KeyStore:
    from twinchat import factory

    return factory.make_keys(settings)


def _ui(args: argparse.Namespace) -> int:
    from ui.server import serve

    service = _service()
    print(
        f"studio: http://{args.host}:{args.port}/studio (a researcher or admin key), "
        f"portal: http://{args.host}:{args.port}/portal (a customer key); `twinchat keys create` makes keys",
        file=sys.stderr,
    )
    serve(service.settings, host=args.host, port=args.port, service=service)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from twinchat.importers.online_retail import OnlineRetailImport

    settings = _settings()
    path = args.data or settings.data_dir / "online_retail" / "online_retail_sample.csv"
    if not path.is_file():
        print(
            f"twinchat: error: the Online Retail sample is not at {path}; pass --data or set TWINCHAT_DATA_DIR",
            file=sys.stderr,
        )
        return 2
    service = _service(settings)
    print(f"building demo twins of the {args.customers} most active customers in {path} ...")
    importer = OnlineRetailImport(path, customers=args.customers)
    report = service.ingest_records(importer.records(), panel=DEMO_PANEL, progress=True, label=path.name)
    _print_report(report, dict(importer.skipped), as_json=False)
    twins = service.twins(panel=DEMO_PANEL)
    example = twins[0].twin_id if twins else "TWIN_ID"
    synthetic: list = []
    if args.synthetic > 0:
        print(
            f"\nbuilding {args.synthetic} synthetic customers (labelled synthetic; no real person's data) ..."
        )
        _synthesize(service, n=args.synthetic, seed=0, panel=SYNTHETIC_DEMO_PANEL, data=args.data)
        synthetic = service.twins(panel=SYNTHETIC_DEMO_PANEL)
    print(f"\n{len(twins)} real customers' twins in panel '{DEMO_PANEL}' under {settings.home}", end="")
    if synthetic:
        print(f", {len(synthetic)} synthetic twins in panel '{SYNTHETIC_DEMO_PANEL}'", end="")
    print(". Try:")
    print(f'  twinchat ask {example} "What do you usually buy from us?"')
    if synthetic:
        print(
            f'  twinchat ask {synthetic[0].twin_id} "Which day do you prefer your deliveries?"  # synthetic'
        )
    if args.no_serve:
        return 0
    _, key = service.create_key("researcher", label="demo", use=_use(args, "admin"))
    print(
        f"  curl -s http://{args.host}:{args.port}/v1/twins/{example}/ask -H 'content-type: application/json' "
        f"-H 'Authorization: Bearer {key}' "
        '-d \'{"question": "What do you usually buy?"}\'\n'
        "(a researcher key made for this demo; `twinchat keys create --role ROLE` makes others)\n"
    )
    if twins:
        _, customer = service.create_key("customer", twin_id=example, label="demo", use=_use(args, "admin"))
        print(
            f"  research studio: http://{args.host}:{args.port}/studio (sign in with the researcher key)\n"
            f"  customer portal: http://{args.host}:{args.port}/portal (customer {example}'s key: {customer})\n"
        )
    from twinchat.api.app import serve

    serve(settings, host=args.host, port=args.port, service=service)
    return 0


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _debug() -> bool:
    import os

    return os.environ.get("TWINCHAT_DEBUG", "") not in ("", "0", "false")


if __name__ == "__main__":
    sys.exit(main())
