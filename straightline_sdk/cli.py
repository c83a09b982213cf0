"""The ``straightline`` command: what the SDK left on each target, and cleaning up.

    straightline ls            every container, image, function... the SDK made, per target kind
    straightline gc            remove the orphans among them (no live deployment owns them)
    straightline gc --dry-run  say what gc would remove

Only things the SDK labelled or tagged are listed, and gc removes orphans and
nothing else: what a running process uses, what was deployed with keep=True and
what belongs to another machine's processes stay.
"""

from __future__ import annotations

import argparse
import sys

from .config import settings
from .errors import StraightLineError
from .targets import REGISTRY, target_class


def _inventories(kinds) -> tuple[list[dict], list[str]]:
    items, problems = [], []
    for kind in kinds:
        try:
            cls = target_class(kind)
            if cls is None:
                continue
            items += cls.inventory(settings().target_options(kind))
        except Exception as exc:   # one kind's engine being down must not hide the others
            problems.append(f"{kind}: {str(exc).splitlines()[0]}")
    return items, problems


def _table(items: list[dict]) -> str:
    columns = ("kind", "type", "id", "name", "state", "owner", "orphan")
    rows = [[str(item.get(c, "")) if c != "orphan" else ("yes" if item.get("orphan") else "no")
             for c in columns] for item in items]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _ls(args) -> int:
    items, problems = _inventories(args.kind or list(REGISTRY))
    for problem in problems:
        print(f"(skipped {problem})", file=sys.stderr)
    print(_table(items) if items else "nothing made by straightline-sdk was found")
    return 0


def _gc(args) -> int:
    items, problems = _inventories(args.kind or list(REGISTRY))
    for problem in problems:
        print(f"(skipped {problem})", file=sys.stderr)
    orphans = sorted((i for i in items if i.get("orphan")), key=lambda i: i.get("remove_order", 0))
    if not orphans:
        print("no orphans: nothing to remove")
        return 0
    failed = 0
    for item in orphans:
        what = f"{item['kind']} {item['type']} {item['id']} ({item.get('name') or '-'})"
        if args.dry_run:
            print(f"would remove {what}")
            continue
        try:
            target_class(item["kind"]).remove(item, settings().target_options(item["kind"]))
        except (StraightLineError, OSError) as exc:
            failed += 1
            print(f"could not remove {what}: {exc}", file=sys.stderr)
        else:
            print(f"removed {what}")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="straightline", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list what the SDK made, on every target kind")
    gc = sub.add_parser("gc", help="remove what no live deployment owns")
    gc.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    for p in (ls, gc):
        p.add_argument("--kind", action="append", choices=list(REGISTRY),
                       help="only this target kind (repeatable)")
    args = parser.parse_args(argv)
    return _ls(args) if args.command == "ls" else _gc(args)


if __name__ == "__main__":
    sys.exit(main())
