"""The ``straightline`` command: what the SDK left on each target, cleaning up, settings.

    straightline ls            every container, image, function... the SDK made, per target kind
    straightline gc            remove the orphans among them (no live deployment owns them)
    straightline gc --dry-run  say what gc would remove
    straightline gc --unused   also remove images (one per dependency set; per-function images
                               of earlier SDK versions) and Lambda functions' leftovers that no
                               live or kept deployment uses
    straightline config        the settings in force, and where each came from

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
            try:
                items += cls.inventory(settings().target_options(kind))
            except Exception:
                # e.g. a container removed by someone else between the engine's list and
                # its inspection: a second look sees a settled list
                items += cls.inventory(settings().target_options(kind))
        except Exception as exc:   # one kind's engine being down must not hide the others
            problems.append(f"{kind}: {str(exc).splitlines()[0]}")
    return items, problems


def _cell(item: dict, column: str) -> str:
    value = item.get(column.replace(" ", "_"))
    if column in ("orphan", "unused"):
        return "yes" if value else "no"
    if column == "size":
        from .placement import human_bytes
        return human_bytes(value) if isinstance(value, (int, float)) else ""
    return "" if value is None else str(value)


def _table(items: list[dict]) -> str:
    columns = ("kind", "type", "id", "name", "size", "last used", "used by", "state", "owner",
               "orphan", "unused")
    rows = [[_cell(item, c) for c in columns] for item in items]
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
    orphans = sorted((i for i in items if (i.get("orphan") or (args.unused and i.get("unused")))
                      and _named(i, args.name)),
                     key=lambda i: i.get("remove_order", 0))
    if not orphans:
        print("nothing unused: nothing to remove" if args.unused else "no orphans: nothing to remove")
        return 0
    if args.unused and not args.dry_run:
        print(f"will remove {len(orphans)} item(s) no live or kept deployment uses:")
        for item in orphans:
            print(f"  {item['kind']} {item['type']} {item['id']} ({item.get('name') or '-'})")
        if not args.yes:
            if not sys.stdin.isatty():   # a notebook's !straightline, a script: nobody to ask
                print("nothing removed: there is no terminal to ask; run it again with --yes "
                      "to remove them (--dry-run only lists)", file=sys.stderr)
                return 1
            if input("remove them? [y/N] ").strip().lower() not in ("y", "yes"):
                print("nothing removed")
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


def _named(item: dict, patterns) -> bool:
    """Whether the item belongs to a deployment matching one of ``patterns`` (globs)."""
    if not patterns:
        return True
    import fnmatch
    return any(fnmatch.fnmatchcase(item.get("deployment") or "", p) for p in patterns)


_SECRET_WORDS = ("token", "secret", "password", "passwd", "credential", "key")


def _shown(name: str, value) -> str:
    """A value for people; anything named like a secret is never printed."""
    if any(word in name.lower() for word in _SECRET_WORDS) and value not in (None, ""):
        return "(set, not shown)"
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value))
    if value is None:
        return "-"
    return str(value)


def _config(args) -> int:
    from dataclasses import fields

    from .config import DEFAULT, KEYS, load
    from .placement import human_bytes
    try:
        current = load()
    except ValueError as exc:
        print(f"the settings cannot be read: {exc}", file=sys.stderr)
        return 1
    rows = []
    for key in KEYS:
        value = getattr(current, key)
        if key == "size_threshold":
            value = f"{human_bytes(value)} ({value} B)"
        elif key == "progress" and value is None:
            value = "auto (long work only)"
        rows.append((key, _shown(key, value), current.source(key)))
    for kind in args.kind or list(REGISTRY):
        try:
            options = current.target_options(kind)
        except ValueError as exc:
            rows.append((f"options.{kind}", f"cannot be read: {exc}", ""))
            continue
        for f in fields(options):
            key = f"options.{kind}.{f.name}"
            source = current.source(key)
            if source == DEFAULT and not args.all:
                continue
            rows.append((key, _shown(f.name, getattr(options, f.name)), source))
    widths = [max(len(r[i]) for r in rows + [("SETTING", "VALUE", "FROM")]) for i in range(2)]
    print(f"{'SETTING'.ljust(widths[0])}  {'VALUE'.ljust(widths[1])}  FROM")
    for key, value, source in rows:
        print(f"{key.ljust(widths[0])}  {value.ljust(widths[1])}  {source}".rstrip())
    if not args.all:
        print("\n(target options left at their defaults are not shown: --all shows them)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="straightline", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list what the SDK made, on every target kind")
    gc = sub.add_parser("gc", help="remove what no live deployment owns")
    gc.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    gc.add_argument("--unused", action="store_true",
                    help="also images and Lambda layers no live or kept deployment uses "
                         "(dependency sets no longer used, earlier SDK versions' function "
                         "images), not only orphans")
    gc.add_argument("--name", action="append",
                    help="only what belongs to deployments with this name (a glob; repeatable)")
    gc.add_argument("--yes", "-y", action="store_true", help="do not ask before removing")
    config = sub.add_parser("config", help="the settings in force and where each came from")
    config.add_argument("--all", action="store_true",
                        help="also the target options left at their defaults")
    for p in (ls, gc, config):
        p.add_argument("--kind", action="append", choices=list(REGISTRY),
                       help="only this target kind (repeatable)")
    args = parser.parse_args(argv)
    return {"ls": _ls, "gc": _gc, "config": _config}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
