"""``popchain model …`` and ``popchain audit``: the champion as a product, with its provenance, on every task.

A model is named by its hash, any unique prefix of it (at least 4 hex digits, as ``model history`` prints
them), or ``champion`` (the current round's task's champion; ``--task N`` for another task's). Each model is
handled under its own task: ``get`` writes a self-contained ``.popmodel`` (its task's spec + the chain's model
bytes; ``--raw`` for the bare bytes); ``export`` writes ONNX (or .popmodel) plus a model card after checking
onnxruntime against popchain's own scoring on every public and revealed row of the task (the card lists them);
``predict`` runs a task's champion from the node or a local file; ``eval`` runs the round test locally (exit 4
when the model would not pass); ``audit`` re-checks every task's champion history (node.tools.audit).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from node.errors import EXIT_INCONSISTENT
from node.tools.cli_chain import champion_line, rule_text
from node.tools.cli_common import CliError, Commands, acall, call, emit, kv

HASH_HELP = "model hash, a unique prefix of it (at least 4 hex digits) or 'champion'"
EXIT_WOULD_NOT_PASS = EXIT_INCONSISTENT   # `model eval`: the check found the model would not pass (node.errors)


def _hash_arg(text: str) -> str:
    if text == "champion":
        return text
    t = text.lower()
    if 4 <= len(t) <= 64 and all(ch in "0123456789abcdef" for ch in t):
        return t
    raise CliError(f"{text!r} is not a model hash (64 hex digits), a prefix of one (at least 4) or 'champion'")


async def _resolve_hash(client: Any, text: str, task: int | None = None) -> str:
    """The full model hash: 'champion' (of ``task``, or of the current round's task) or a unique prefix."""
    if text == "champion":
        return str((await client.champion(task))["champion"]["model_hash"])
    return str((await client.get(f"/api/models/{text}", format="hex"))["hash"])


def cmd_champion(args: argparse.Namespace) -> None:
    from node.tools.cli_chain import n
    data = call(args, lambda c: c.champion(args.task))
    champ = data["champion"]
    emit(args, champ, kv({k: n(v) if k in ("height", "round", "b", "c", "bar") else v for k, v in champ.items()}))


def cmd_history(args: argparse.Namespace) -> None:
    data = call(args, lambda c: c.champion(args.task))
    emit(args, data["history"], [champion_line(c) for c in data["history"]])


async def _model_for(client: Any, wanted: str, task: int | None) -> tuple[Any, Any, bytes, Any]:
    """(chain view, the model's task view, its bytes, its champion record or None) for a hash/prefix/'champion'."""
    from node.tools import provenance as pv
    view = await pv.chain_view(client)
    h = await _resolve_hash(client, wanted, task)
    raw, task_view, record = await pv.model_and_task(client, view, h)
    return view, task_view, raw, record


def cmd_get(args: argparse.Namespace) -> None:
    from ml.predictor import PopPredictor
    from node.tools import provenance as pv
    wanted = _hash_arg(args.hash)
    try:
        view, task, raw, _ = call(args, lambda c: _model_for(c, wanted, args.task))
        pv.decode_under(view, task, raw, "model")     # validate as a node would, under the model's own task
    except pv.ProvenanceError as exc:
        raise CliError(str(exc)) from None
    from chain.block import model_hash
    h = model_hash(raw).hex()
    if args.raw:
        Path(args.out).write_bytes(raw)
        data = raw
    else:   # wrap with the task spec so it needs no node to use
        PopPredictor.from_bytes(raw, task.spec, view.genesis.model_caps).save(args.out)
        data = Path(args.out).read_bytes()
    emit(args, {"hash": h, "task_id": task.task_id, "out": args.out, "bytes": len(data), "raw": args.raw},
         f"wrote {len(data):,} bytes to {args.out} ({'raw model bytes' if args.raw else 'popmodel'}; model "
         f"{h[:16]}…, task {task.task_id} {task.spec.name})")


class LocalModel:
    """A model file for predict and eval: a .popmodel (PopPredictor) or an exported .onnx (its task spec and
    model hash are in the ONNX metadata, written by ``model export``)."""

    def __init__(self, path: str) -> None:
        from ml.errors import MLError
        from ml.onnx_export import OnnxPredictor
        from ml.predictor import PopPredictor
        from ml.task import TaskSpec
        self.onnx: OnnxPredictor | None = None
        self.pop: PopPredictor | None = None
        data = Path(path).read_bytes()
        if path.endswith(".onnx"):
            self.onnx = OnnxPredictor(data)
            try:
                self.spec = TaskSpec.from_obj(json.loads(self.onnx.metadata["task_spec"]))
            except (KeyError, ValueError, MLError):
                raise CliError(f"{path}: no popchain task spec in the ONNX metadata (export it with "
                               "'popchain model export')") from None
            self.model_hash = self.onnx.metadata.get("model_hash", "")
        else:
            try:
                self.pop = PopPredictor.load(path)
            except MLError as exc:
                raise CliError(f"{path}: not a .popmodel ({exc}); for a raw model from 'model get --raw' use "
                               "'popchain model get HASH --out m.popmodel'") from None
            self.spec = self.pop.spec
            from chain.block import model_hash
            self.model_hash = model_hash(self.pop.model_bytes).hex()

    def predict(self, X: Any) -> Any:
        """Class indexes for quantised integer features X."""
        if self.onnx is not None:
            from node.tools.provenance import original_units
            return self.onnx.predict(original_units(X, self.spec.scale_bits))   # re-quantised exactly in-graph
        assert self.pop is not None
        return self.pop.predict(X)


def _csv_features(path: str, label_column: str) -> int:
    import csv
    try:
        with Path(path).open(newline="") as fh:
            header = next(csv.reader(fh), [])
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    return len([c for c in header if c != label_column])


async def _predict_task(client: Any, args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], bytes]:
    """(genesis, the task's view, its champion record, the champion's bytes): ``--task``, else the task whose
    feature count the CSV has (the current round's task when several have it)."""
    from node.tools import provenance as pv
    view = await pv.chain_view(client)
    task_id = args.task
    if task_id is None:
        n = _csv_features(args.input, args.label_column)
        tasks = (await client.tasks())["tasks"]
        same = [t["task_id"] for t in tasks if t.get("spec") and t["spec"]["n_features"] == n]
        current = (await client.status()).get("round_task")
        if not same:
            raise CliError(f"{args.input}: {n} feature columns, and no task of this chain has {n} features "
                           "(see 'popchain task list')")
        if len(same) > 1 and current not in same:
            raise CliError(f"{args.input}: tasks {', '.join(map(str, same))} all take {n} features: pass --task ID")
        task_id = current if current in same else same[0]
    champ = (await client.champion(task_id))["champion"]
    raw, task, _ = await pv.model_and_task(client, view, champ["model_hash"])
    return view.genesis, task, champ, raw


def cmd_predict(args: argparse.Namespace) -> None:
    from ml.task import read_feature_csv
    from node.tools import provenance as pv
    result: dict[str, Any] = {}
    if args.model:
        local = LocalModel(args.model)
        spec = local.spec
        X, y = read_feature_csv(args.input, spec, label_column=args.label_column)
        pred = local.predict(X)
        source, label = args.model, f"model {args.model}"
    else:
        from ml.predictor import PopPredictor
        try:
            genesis, task, champ, raw = call(args, lambda c: _predict_task(c, args))
        except pv.ProvenanceError as exc:
            raise CliError(str(exc)) from None
        spec = task.spec
        X, y = read_feature_csv(args.input, spec, label_column=args.label_column)
        pred = PopPredictor.from_bytes(raw, spec, genesis.model_caps).predict(X)
        source = champ["model_hash"]
        label = f"champion {champ['model_hash'][:16]}… of task {task.task_id} (round {champ.get('round')})"
        result.update(champion=source, task_id=task.task_id)
    names = [spec.classes[i] for i in pred]
    if args.out:
        Path(args.out).write_text("prediction\n" + "".join(f"{n}\n" for n in names))
    result.update({"rows": len(names), "model": source, "out": args.out})
    lines = [f"{len(names):,} predictions by {label}"]
    if y is not None:
        result["accuracy"] = float((pred == y).mean()) if len(y) else 0.0
        lines.append(f"accuracy on the labelled rows: {result['accuracy']:.4f}")
        if not args.model:
            lines += _forward_lines(args, result)
    if args.out:
        lines.append(f"written to {args.out}")
    else:
        lines += names[:20] + ([f"... ({len(names) - 20:,} more; use --out FILE)"] if len(names) > 20 else [])
    emit(args, result, lines)


def _forward_lines(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    """Issue 21: on a DRIFTING generated task a file's rows (e.g. holdout.csv, the task's start) say nothing
    about the champion now; say so, with the champion's accuracy on its forward holdout (node.tools.forward)."""
    from node.tools.forward import judged_holdout

    async def forward(client: Any) -> dict[str, Any] | None:
        t = await client.task_info(result["task_id"])
        return await judged_holdout(client, result["task_id"], t, drifting_only=True)
    j = call(args, forward)
    if not j or not j.get("drifting"):
        return []
    result["forward_holdout"] = j
    if j.get("pending"):
        return [("the task drifts: rows like these (e.g. holdout.csv, the task's start) do not judge its champion; "
                "its forward holdout (the next shard revealed after its crowning) is not revealed yet")]
    return [(f"the task drifts: rows like these (e.g. holdout.csv, the task's start) do not judge its champion; on "
            f"its forward holdout (shard {j['shard_index']:,}, revealed in round {j['round']:,} after its crowning "
            f"in round {j['crowned_round']:,}) it scores {j['champion_accuracy']:.4f} (Bayes limit "
            f"{j['bayes_accuracy']:.4f})")]


def cmd_export(args: argparse.Namespace) -> None:
    from ml.onnx_export import agreement_parts, to_onnx
    from ml.predictor import PopPredictor
    from node.tools import provenance as pv
    wanted = _hash_arg(args.hash)
    out = Path(args.out)
    card_path = out.with_suffix(".card.json")
    try:
        view, task, raw, rec = call(args, lambda c: _model_for(c, wanted, args.task))
        if rec is None:
            raise CliError(f"model {wanted[:16]}… is not a crowned model of this chain (see 'popchain model history')")
        model = pv.decode_under(view, task, raw, "model")
        card = pv.model_card(view, task, rec, model)
        spec, caps = task.spec, view.genesis.model_caps
        if args.format == "onnx":
            data = to_onnx(model, spec, caps, metadata={
                "model_hash": rec["model_hash"], "chain_id": card["chain_id"], "genesis_hash": card["genesis_hash"],
                "round": str(rec["round"]), "task_id": str(task.task_id), "task_spec": json.dumps(spec.to_obj())})
            parts = pv.check_parts(task)
            if args.check_csv:
                from ml.task import read_feature_csv
                X2, _ = read_feature_csv(args.check_csv, spec)
                parts.append((args.check_csv, pv.original_units(X2, spec.scale_bits)))
            results = agreement_parts(data, model, spec, [x for _, x in parts])
            checked: list[dict[str, Any]] = [{"source": name, "rows": rows, "same": same}
                                             for (name, _), (same, rows) in zip(parts, results)]
            same, n = sum(s for s, _ in results), sum(r for _, r in results)
            card["onnx"] = {"opset": 17, "input": "x", "outputs": ["label", "scores"],
                            "agreement": {"rows": n, "same": same, "every_row": True, "checked": checked}}
            if same != n:
                raise CliError(f"onnxruntime disagrees with popchain's scoring on {n - same:,} of {n:,} rows: "
                               "not writing the export")
        else:
            PopPredictor(model, spec).save(out)
            data = out.read_bytes()
    except pv.ProvenanceError as exc:
        raise CliError(str(exc)) from None
    out.write_bytes(data)
    card["file"] = {"name": out.name, "format": args.format, "sha256": pv.sha256_hex(data), "bytes": len(data)}
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    agree = card.get("onnx", {}).get("agreement")
    lines = [f"wrote {out} ({len(data):,} bytes, {args.format}) and its model card {card_path}",
             (f"task {task.task_id} ({spec.name})  round {card['round']}  block {card['block_hash'][:16]}…  miner "
             f"{card['miner_address'] or '(initial)'}  b {card['b']:,} c {card['c']:,} {rule_text(card)}")]
    if card["shard_accuracy"] is not None:
        lines.append(f"accuracy on its shard: {card['shard_accuracy']:.4f} ({card['shard_rows']:,} rows)")
    if agree:
        lines.append(f"agreement with popchain scoring: {agree['same']:,}/{agree['rows']:,} rows, every row of:")
        lines += [f"  {c['source']}: {c['same']:,}/{c['rows']:,}" for c in agree["checked"]]
    emit(args, {"out": str(out), "card": str(card_path), **card}, lines)


def cmd_eval(args: argparse.Namespace) -> int:
    from chain.block import model_hash
    from node.tools import provenance as pv
    from node.tools.evaluate import Candidate, evaluate
    if args.shards < 1:
        raise CliError("--shards must be at least 1")
    path = Path(args.file)
    if args.file.endswith(".onnx") or args.file.endswith(".popmodel"):
        local = LocalModel(args.file)
        cand = Candidate(local.model_hash, local.spec, model=local.pop.model if local.pop else None,
                         onnx=local.onnx)
    else:
        raw = path.read_bytes()
        cand = Candidate(model_hash(raw).hex(), raw=raw)
    try:
        res = asyncio.run(acall(args, lambda c: evaluate(c, cand, args.shards, args.task)))
    except pv.ProvenanceError as exc:
        raise CliError(str(exc)) from None
    lines = [(f"model {res['model_hash'][:16]}… vs champion {res['champion'][:16]}… of task {res['task_id']} (round "
             f"{res['champion_round']}), scored by {res['via']}"),
             (f"round test of round {res['next_round']} ({rule_text(res['rule'])}, consensus rules, "
             f"{res['assumed_entries']} entries assumed):")]
    for s in res["shards"]:
        lines.append(f"  round {s['shard_round']:>3} (shard {s['shard_index']}): b {s['b']:,} c {s['c']:,}  accuracy "
                     f"{s['accuracy']:.4f} vs {s['champion_accuracy']:.4f}  {'PASS' if s['passes'] else 'fail'}")
    if res["duplicate_of_a_champion"]:
        lines.append("  the model is byte-identical to a past champion: a block with it is refused")
    if res["task_status"] != "open":
        lines.append(f"  task {res['task_id']} is closed: no round of it is left to enter")
    lines.append(f"would pass on the latest revealed shard: {'yes' if res['would_pass'] else 'no'} "
                 "(a shard the model was trained on overstates it)")
    emit(args, res, lines)
    return 0 if res["would_pass"] else EXIT_WOULD_NOT_PASS


def cmd_audit(args: argparse.Namespace) -> int:
    from node.tools import provenance as pv
    from node.tools.audit import audit, audit_html
    expected = None
    if args.genesis:
        from consensus.protocol.genesis import load_genesis
        expected = load_genesis(Path(args.genesis).read_bytes()).hash
    out = Path(args.out)
    try:    # before the work: a report that cannot be written fails now, not after the audit
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    except OSError as exc:
        raise CliError(f"cannot write the report {args.out}: {exc.strerror}") from None
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\raudit: {done:,}/{total:,} records", end="\n" if done == total else "", file=sys.stderr,
                  flush=True)
    try:
        report = asyncio.run(acall(args, lambda c: audit(c, expected, progress)))
    except pv.ProvenanceError as exc:
        raise CliError(str(exc)) from None
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    html_path = None
    if args.html:
        html_path = out.with_suffix(".html")
        html_path.write_text(audit_html(report))
    bad = [r for r in report["records"] if not r["ok"]]
    lines = [(f"audited {len(report['records']):,} champion records ({report['crowned']:,} crowned) of "
             f"{report['chain_id']}: {'all checks pass' if not bad else f'{len(bad):,} FAILED'}")]
    lines += [f"  task {t['task_id']} {t['name']}: {t['crowned']:,} crowned, {'ok' if t['ok'] else 'PROBLEMS'} "
              f"(package: {t['package']})" for t in report["tasks"]]
    lines.append(f"report: {args.out}" + (f"  html: {html_path}" if html_path else ""))
    lines += [f"  round {r['round']} (task {r['task_id']}): {'; '.join(r['problems'])}" for r in bad]
    emit(args, report, lines)
    if bad:
        raise CliError(f"audit found problems in {len(bad)} of {len(report['records'])} records (see {args.out})")
    return 0


def register(cmds: Commands) -> None:
    g = cmds.group("model", "the champion model: inspect, download, export, predict, evaluate")
    p = g.leaf("champion", "the current champion (of the current round's task, or of one task)", cmd_champion,
               node=True)
    p.add_argument("--task", type=int, help="that task's champion (see 'popchain task list')")
    p = g.leaf("history", "every crowned model (of the chain, or one task's lineage)", cmd_history, node=True)
    p.add_argument("--task", type=int, help="that task's champions only")
    p = g.leaf("get", "download a model by hash as a self-contained .popmodel", cmd_get, node=True)
    p.add_argument("hash", type=_hash_arg, help=HASH_HELP)
    p.add_argument("--out", required=True, help="output file (e.g. m.popmodel)")
    p.add_argument("--raw", action="store_true", help="write the chain's bare model bytes instead")
    p.add_argument("--task", type=int, help="with 'champion': that task's champion (default: the current round's)")
    p = g.leaf("export", "export a crowned model (ONNX or .popmodel) with a model card", cmd_export, node=True)
    p.add_argument("hash", type=_hash_arg, help=HASH_HELP)
    p.add_argument("--format", default="onnx", choices=("onnx", "popmodel"), help="onnx (default) or popmodel")
    p.add_argument("--out", required=True, help="output file; the card goes beside it as NAME.card.json")
    p.add_argument("--check-csv", metavar="FILE",
                   help="also check agreement on these rows (e.g. holdout.csv; original units)")
    p.add_argument("--task", type=int, help="with 'champion': that task's champion (default: the current round's)")
    p = g.leaf("predict", "predict with a task's champion (or a local model file) on a CSV of task features",
               cmd_predict, node=True)
    p.add_argument("--input", required=True, help="CSV with a header row of the task's feature columns in their "
                                                   "original units (as in holdout.csv), optionally a label column")
    p.add_argument("--model", metavar="FILE", help="a .popmodel or exported .onnx file (no node needed)")
    p.add_argument("--task", type=int, help="the task whose champion predicts (default: the task with the CSV's "
                                            "number of features)")
    p.add_argument("--label-column", default="label", help="label column, if present (default 'label')")
    p.add_argument("--out", help="write predictions here (one per line, header 'prediction')")
    p = g.leaf("eval", "would this model pass the round test now? (local, against its task's champion; exit 4 if "
                       "not)", cmd_eval, node=True)
    p.add_argument("file", help="a .popmodel (from miner tooling or 'model get'), an exported .onnx, or raw model "
                                "bytes")
    p.add_argument("--shards", type=int, default=1, help="test on the task's latest N revealed shards (default 1)")
    p.add_argument("--task", type=int, help="the task to test on (default: the one whose spec the file carries; "
                                            "raw bytes: the current round's task)")

    p = cmds.leaf("audit", "re-check every crowned model of every task against the chain (scores, records, "
                           "lineage)", cmd_audit, node=True)
    p.add_argument("--out", required=True, help="JSON report file (its directory is created)")
    p.add_argument("--html", action="store_true", help="also write an HTML report beside it (NAME.html)")
    p.add_argument("--genesis", help="your own copy of the genesis file: refuse a node serving another chain")
