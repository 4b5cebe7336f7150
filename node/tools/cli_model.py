"""``popchain model …`` and ``popchain audit``: the champion as a product, with its provenance.

``get`` writes a self-contained ``.popmodel`` (task spec + the chain's model bytes; ``--raw`` for the bare
bytes); ``export`` writes ONNX (or .popmodel) plus a model card after a 100 % agreement check of onnxruntime
against popchain's own scoring; ``predict`` runs the champion from the node or a local file; ``eval`` runs the
current round test locally; ``audit`` re-checks the whole champion history (node.tools.provenance).
"""
from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from node.tools.cli_chain import champion_line, rule_text
from node.tools.cli_common import CliError, Commands, acall, call, emit, kv

HASH_HELP = "model hash (64 hex digits) or 'champion'"


def _hash_arg(text: str) -> str:
    if text == "champion":
        return text
    try:
        if len(bytes.fromhex(text)) == 32:
            return text.lower()
    except ValueError:
        pass
    raise CliError(f"{text!r} is not a model hash (64 hex digits) or 'champion'")


async def _resolve_hash(client, text: str) -> str:
    return (await client.champion())["champion"]["model_hash"] if text == "champion" else text


def cmd_champion(args: argparse.Namespace) -> None:
    data = call(args, lambda c: c.champion(args.task))
    emit(args, data["champion"], kv(data["champion"]))


def cmd_history(args: argparse.Namespace) -> None:
    data = call(args, lambda c: c.champion(args.task))
    emit(args, data["history"], [champion_line(c) for c in data["history"]])


def cmd_get(args: argparse.Namespace) -> None:
    from consensus.protocol.genesis import load_genesis
    from ml.predictor import PopPredictor
    wanted = _hash_arg(args.hash)

    async def fetch(client):
        h = await _resolve_hash(client, wanted)
        return h, load_genesis(await client.genesis()), await client.model(h)
    h, genesis, raw = call(args, fetch)
    if args.raw:
        data = raw
    else:   # validate as a node would, then wrap with the task spec so it needs no node to use
        predictor = PopPredictor.from_bytes(raw, genesis.task.spec, genesis.model_caps)
        predictor.save(args.out)
        data = Path(args.out).read_bytes()
    if args.raw:
        Path(args.out).write_bytes(data)
    emit(args, {"hash": h, "out": args.out, "bytes": len(data), "raw": args.raw},
         f"wrote {len(data):,} bytes to {args.out} ({'raw model bytes' if args.raw else 'popmodel'})")


class LocalModel:
    """A model file for predict: a .popmodel (PopPredictor) or an exported .onnx (its task spec is in the ONNX
    metadata, written by ``model export``)."""

    def __init__(self, path: str) -> None:
        from ml.errors import MLError
        from ml.onnx_export import OnnxPredictor
        from ml.predictor import PopPredictor
        from ml.task import TaskSpec
        self.onnx: OnnxPredictor | None = None
        self.pop: PopPredictor | None = None
        if path.endswith(".onnx"):
            self.onnx = OnnxPredictor(Path(path).read_bytes())
            try:
                self.spec = TaskSpec.from_obj(json.loads(self.onnx.metadata["task_spec"]))
            except (KeyError, ValueError, MLError):
                raise CliError(f"{path}: no popchain task spec in the ONNX metadata (export it with "
                               "'popchain model export')") from None
        else:
            try:
                self.pop = PopPredictor.load(path)
            except MLError as exc:
                raise CliError(f"{path}: not a .popmodel ({exc}); for a raw model from 'model get --raw' use "
                               "'popchain model get HASH --out m.popmodel'") from None
            self.spec = self.pop.spec

    def predict(self, X):
        """Class indexes for quantised integer features X."""
        if self.onnx is not None:
            from node.tools.provenance import original_units
            return self.onnx.predict(original_units(X, self.spec.scale_bits))   # re-quantised exactly in-graph
        assert self.pop is not None
        return self.pop.predict(X)


def cmd_predict(args: argparse.Namespace) -> None:
    from ml.task import read_feature_csv
    if args.model:
        local = LocalModel(args.model)
        spec = local.spec
        X, y = read_feature_csv(args.input, spec, label_column=args.label_column)
        pred = local.predict(X)
        source, label = args.model, f"model {args.model}"
    else:
        from consensus.protocol.genesis import load_genesis
        from ml.predictor import PopPredictor

        async def fetch(client):
            genesis = load_genesis(await client.genesis())
            champ = (await client.champion())["champion"]
            return genesis, champ, await client.model(champ["model_hash"])
        genesis, champ, raw = call(args, fetch)
        spec = genesis.task.spec
        X, y = read_feature_csv(args.input, spec, label_column=args.label_column)
        pred = PopPredictor.from_bytes(raw, spec, genesis.model_caps).predict(X)
        source, label = champ["model_hash"], f"champion {champ['model_hash'][:16]}… (round {champ.get('round')})"
    names = [spec.classes[i] for i in pred]
    if args.out:
        Path(args.out).write_text("prediction\n" + "".join(f"{n}\n" for n in names))
    result: dict[str, Any] = {"rows": len(names), "model": source, "out": args.out}
    if not args.model:
        result["champion"] = source
    lines = [f"{len(names)} predictions by {label}"]
    if y is not None:
        result["accuracy"] = float((pred == y).mean()) if len(y) else 0.0
        lines.append(f"accuracy on the labelled rows: {result['accuracy']:.4f}")
    if args.out:
        lines.append(f"written to {args.out}")
    else:
        lines += names[:20] + ([f"... ({len(names) - 20} more; use --out FILE)"] if len(names) > 20 else [])
    emit(args, result, lines)


def cmd_export(args: argparse.Namespace) -> None:
    from ml.onnx_export import agreement, to_onnx
    from ml.predictor import PopPredictor
    from node.tools import provenance as pv
    wanted = _hash_arg(args.hash)
    out = Path(args.out)
    card_path = out.with_suffix(".card.json")

    async def fetch(client):
        h = await _resolve_hash(client, wanted)
        view = await pv.chain_view(client)
        rec = view.record(h)
        if rec is None:
            raise CliError(f"model {h[:16]}… is not a crowned model of this chain (see 'popchain model history')")
        return view, rec, await client.model(h)
    try:
        view, rec, raw = call(args, fetch)
        model = pv.decode_for(view, raw, "model")
        card = pv.model_card(view, rec, model)
        spec, caps = view.genesis.task.spec, view.genesis.model_caps
        if args.format == "onnx":
            data = to_onnx(model, spec, caps, metadata={
                "model_hash": rec["model_hash"], "chain_id": card["chain_id"], "genesis_hash": card["genesis_hash"],
                "round": str(rec["round"]), "task_spec": json.dumps(spec.to_obj())})
            x, sources = pv.check_rows(view)
            if args.check_csv:
                import numpy as np

                from ml.task import read_feature_csv
                X2, _ = read_feature_csv(args.check_csv, spec)
                x = np.concatenate([x, pv.original_units(X2, spec.scale_bits)])
                sources.append(f"{args.check_csv} ({len(X2)} rows)")
            same, n = agreement(data, model, spec, x)
            card["onnx"] = {"opset": 17, "input": "x", "outputs": ["label", "scores"],
                            "agreement": {"rows": n, "same": same, "rows_from": sources}}
            if same != n:
                raise CliError(f"onnxruntime disagrees with popchain's scoring on {n - same} of {n} rows: "
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
             f"round {card['round']}  block {card['block_hash'][:16]}…  miner {card['miner_address'] or '(genesis)'}"
             f"  b {card['b']} c {card['c']} {rule_text(card)}"]
    if card["shard_accuracy"] is not None:
        lines.append(f"accuracy on its shard: {card['shard_accuracy']:.4f} ({card['shard_rows']} rows)")
    if agree:
        lines.append(f"agreement with popchain scoring: {agree['same']}/{agree['rows']} rows (100 %)")
    emit(args, {"out": str(out), "card": str(card_path), **card}, lines)


def cmd_eval(args: argparse.Namespace) -> None:
    from ml.predictor import PopPredictor
    from node.tools import provenance as pv
    if args.shards < 1:
        raise CliError("--shards must be at least 1")
    path = Path(args.file)
    data = path.read_bytes()

    async def run(client):
        from consensus.protocol.genesis import load_genesis
        genesis = load_genesis(await client.genesis())
        if args.file.endswith(".onnx"):
            raise CliError("eval needs the integer model (.popmodel or raw bytes), not an ONNX export")
        try:
            pop = PopPredictor.load(path, genesis.model_caps)
            if pop.spec != genesis.task.spec:
                raise CliError(f"{args.file} is a model for task {pop.spec.name!r}, not this chain's task")
            model, raw = pop.model, pop.model_bytes
        except Exception as exc:
            if isinstance(exc, CliError):
                raise
            from ml.model import decode_model
            model, raw = decode_model(data, genesis.task.spec, genesis.model_caps), data
        return await pv.evaluate(client, model, raw, args.shards)
    try:
        res = asyncio.run(acall(args, run))
    except pv.ProvenanceError as exc:
        raise CliError(str(exc)) from None
    lines = [f"model {res['model_hash'][:16]}… vs champion {res['champion'][:16]}… (round {res['champion_round']})",
             f"round test of round {res['next_round']} ({rule_text(res['rule'])}, consensus rules, "
             f"{res['assumed_entries']} entries assumed):"]
    for s in res["shards"]:
        lines.append(f"  shard {s['shard_round']:>3}: b {s['b']} c {s['c']}  accuracy {s['accuracy']:.4f} vs "
                     f"{s['champion_accuracy']:.4f}  {'PASS' if s['passes'] else 'fail'}")
    if res["duplicate_of_a_champion"]:
        lines.append("  the model is byte-identical to a past champion: a block with it is refused")
    lines.append(f"would pass on the latest revealed shard: {'yes' if res['would_pass'] else 'no'} "
                 "(a shard the model was trained on overstates it)")
    emit(args, res, lines)


def cmd_audit(args: argparse.Namespace) -> int:
    from node.tools import provenance as pv
    expected = None
    if args.genesis:
        from consensus.protocol.genesis import load_genesis
        expected = load_genesis(Path(args.genesis).read_bytes()).hash
    try:
        report = asyncio.run(acall(args, lambda c: pv.audit(c, expected)))
    except pv.ProvenanceError as exc:
        raise CliError(str(exc)) from None
    Path(args.out).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    html_path = None
    if args.html:
        html_path = Path(args.out).with_suffix(".html")
        html_path.write_text(pv.audit_html(report))
    bad = [r for r in report["records"] if not r["ok"]]
    lines = [f"audited {len(report['records'])} champion records ({report['crowned']} crowned) of "
             f"{report['chain_id']}: {'all checks pass' if not bad else f'{len(bad)} FAILED'}",
             f"report: {args.out}" + (f"  html: {html_path}" if html_path else "")]
    lines += [f"  round {r['round']}: {'; '.join(r['problems'])}" for r in bad]
    emit(args, report, lines)
    if bad:
        raise CliError(f"audit found problems in {len(bad)} of {len(report['records'])} records (see {args.out})")
    return 0


def register(cmds: Commands) -> None:
    g = cmds.group("model", "the champion model: inspect, download, export, predict, evaluate")
    p = g.leaf("champion", "the current champion (of the chain's tip, or of one task)", cmd_champion, node=True)
    p.add_argument("--task", type=int, help="that task's champion (see 'popchain task list')")
    p = g.leaf("history", "every crowned model (of the chain, or one task's lineage)", cmd_history, node=True)
    p.add_argument("--task", type=int, help="that task's champions only")
    p = g.leaf("get", "download a model by hash as a self-contained .popmodel", cmd_get, node=True)
    p.add_argument("hash", type=_hash_arg, help=HASH_HELP)
    p.add_argument("--out", required=True, help="output file (e.g. m.popmodel)")
    p.add_argument("--raw", action="store_true", help="write the chain's bare model bytes instead")
    p = g.leaf("export", "export a crowned model (ONNX or .popmodel) with a model card", cmd_export, node=True)
    p.add_argument("hash", type=_hash_arg, help=HASH_HELP)
    p.add_argument("--format", default="onnx", choices=("onnx", "popmodel"), help="onnx (default) or popmodel")
    p.add_argument("--out", required=True, help="output file; the card goes beside it as NAME.card.json")
    p.add_argument("--check-csv", metavar="FILE",
                   help="also check agreement on these rows (e.g. holdout.csv; original units)")
    p = g.leaf("predict", "predict with the champion (or a local model file) on a CSV of task features",
               cmd_predict, node=True)
    p.add_argument("--input", required=True, help="CSV with a header row of the task's feature columns in their "
                                                   "original units (as in holdout.csv), optionally a label column")
    p.add_argument("--model", metavar="FILE", help="a .popmodel or exported .onnx file (no node needed)")
    p.add_argument("--label-column", default="label", help="label column, if present (default 'label')")
    p.add_argument("--out", help="write predictions here (one per line, header 'prediction')")
    p = g.leaf("eval", "would this model pass the round test now? (local, against the champion)", cmd_eval,
               node=True)
    p.add_argument("file", help="a .popmodel (from miner tooling or 'model get') or raw model bytes")
    p.add_argument("--shards", type=int, default=1, help="test on the latest N revealed shards (default 1)")

    p = cmds.leaf("audit", "re-check every crowned model against the chain (scores, records, lineage)", cmd_audit,
                  node=True)
    p.add_argument("--out", required=True, help="JSON report file")
    p.add_argument("--html", action="store_true", help="also write an HTML report beside it (NAME.html)")
    p.add_argument("--genesis", help="your own copy of the genesis file: refuse a node serving another chain")
