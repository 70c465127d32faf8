"""``platform images``: the offline image check from the command line.

``platform images check [SERVICE...] [--json]`` checks each service's image (all by default):
build context, Dockerfile rules, declared dependencies, and an isolated import of CMD's entry
module (:mod:`scripts.imagecheck`). Prints each image's content hash and tag.

Exit codes: 0 every image passes · 1 an image fails (each error printed) · 64 usage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scripts.cli_common import ExitCode, console, err_console, make_app, run_app

app = make_app(help="Check the services' container images offline (no Docker daemon).")


@app.callback()
def _root() -> None:
    """Check the services' container images offline (no Docker daemon)."""


@app.command()
def check(
    services: Annotated[
        list[str] | None,
        typer.Argument(
            help="Services to check (prediction-coordinator or coordinator, ...).",
            show_default="all",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document on stdout, for CI.")
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Checkout holding images/ and the build context.", show_default="this checkout"
        ),
    ] = None,
    dockerfile: Annotated[
        Path | None,
        typer.Option(
            "--dockerfile",
            "-f",
            help="Check this Dockerfile instead of images/<service>.Dockerfile (one service only).",
        ),
    ] = None,
    context: Annotated[
        Path | None,
        typer.Option(
            help="Use this directory as the build context instead of the root (one service only)."
        ),
    ] = None,
) -> None:
    """Check that each image builds from the repo root and its entry module imports.

    Lays out what the Dockerfile's COPY/WORKDIR/ENV produce in a temp image root and imports
    CMD's entry module there in an isolated `python -S`, with only the distributions its
    requirements declare. Exits 1 naming the problem (e.g. the missing module).
    """
    from scripts.imagecheck import SERVICES, check_image, check_images

    names = services or list(SERVICES)
    if (dockerfile or context) and len(names) != 1:
        err_console.print("[red]Usage error:[/red] --dockerfile/--context need exactly one service")
        raise typer.Exit(code=ExitCode.USAGE)
    if dockerfile or context:
        results = [check_image(names[0], root, dockerfile=dockerfile, context=context)]
    else:
        results = check_images(names, root)
    ok = all(r.ok for r in results)
    if as_json:
        print(
            json.dumps(
                {"ok": ok, "images": [r.to_dict() for r in results]}, default=str, sort_keys=True
            )
        )
    else:
        for r in results:
            mark = "[green]ok[/green]" if r.ok else "[red]FAILED[/red]"
            console.print(
                f"{mark} [bold]{r.service}[/bold]  {_rel(r.dockerfile)}  {r.files} files  "
                f"{r.seconds:.2f} s",
                highlight=False,
                soft_wrap=True,
            )
            if r.content_hash:
                console.print(
                    f"    content hash {r.content_hash}  tag {r.tag}",
                    highlight=False,
                    soft_wrap=True,
                )
            for error in r.errors:
                console.print("    [red]error:[/red] ", end="", soft_wrap=True)
                console.print(error, highlight=False, markup=False, soft_wrap=True)
    if not ok:
        raise typer.Exit(code=ExitCode.ERROR)


def _rel(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
