"""Rich renderings of `supreme cache stats` and `supreme cache bench`."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from supreme_cli.render import _num, _pct, cache_rates


def status_tables(doc: dict[str, Any]) -> list[Table]:
    tiers = Table(title=f"cache {doc['namespace']}", title_justify="left")
    for col in ("tier", "status", "entries", "bound", "details"):
        tiers.add_column(col)
    l1 = doc["tiers"]["l1"]
    tiers.add_row("L1 memory", l1["status"], "–", str(l1["capacity"]), doc["engine"])
    for name, label in (("l2", "L2 Redis"), ("l3", "L3 store")):
        t = doc["tiers"][name]
        info = t.get("info") or {}
        details = [info.get("url", "")]
        if "maxmemory_policy" in info:
            details.append(f"maxmemory {info.get('maxmemory')} policy "
                           f"{info.get('maxmemory_policy')}")
        if t.get("error"):
            details.append(t["error"])
        bound = info.get("max_entries", info.get("bound", "–"))
        tiers.add_row(label, t["status"], _num(t.get("size"), "d"), str(bound),
                      " · ".join(d for d in details if d))
    tables = [tiers]
    last = doc.get("last_run")
    if last:
        run = Table(title=f"last run {last['run_id'][:12]}: per-tier figures",
                    title_justify="left")
        for col in ("tier", "hits", "misses", "hit rate", "p50 µs", "errors", "skipped",
                    "status"):
            run.add_column(col)
        for name in ("l1", "l2", "l3"):
            t = last["cache"]["tiers"][name]
            lat = t.get("latency_us") or {}
            run.add_row(name.upper(), _num(t.get("hits"), "d"), _num(t.get("misses"), "d"),
                        _pct(t.get("hit_rate")), _num(lat.get("p50")),
                        _num(t.get("errors"), "d"), _num(t.get("skipped"), "d"),
                        t.get("status", ""))
        run.caption = "hit rate L1 / L2 / L3: " + cache_rates(last["cache"])
        tables.append(run)
    if doc["top_associations"]:
        assoc = Table(title=f"learned associations ({doc['learned_edges']} edges)",
                      title_justify="left")
        for col in ("after", "prefetch", "weight"):
            assoc.add_column(col)
        for a in doc["top_associations"]:
            assoc.add_row(a["from"], a["to"], f"{a['weight']:.3f}")
        tables.append(assoc)
    return tables


def bench_table(doc: dict[str, Any]) -> Table:
    table = Table(title=f"cache bench · trace {doc['trace']} · {doc['accesses']:,} accesses · "
                        f"capacity {doc['capacity']:,}", title_justify="left")
    for col in ("policy", "hit rate", "loads", "prefetches", "precision", "recall", "wasted",
                "ns/access"):
        table.add_column(col, justify="right" if col != "policy" else "left")
    for name, p in doc["policies"].items():
        table.add_row(name, _pct(p.get("hit_rate")), _num(p.get("loads"), ",d"),
                      _num(p.get("prefetches"), ",d"), _pct(p.get("prefetch_precision")),
                      _pct(p.get("prefetch_recall")), _num(p.get("wasted_prefetches"), ",d"),
                      _num(p.get("ns_per_access"), ",.0f"))
    goals = [f"{'met' if g['met'] else 'MISSED'}: {g['goal']} (measured {g['measured']})"
             for g in doc.get("goals", [])]
    if goals:
        table.caption = "\n".join(goals)
    return table
