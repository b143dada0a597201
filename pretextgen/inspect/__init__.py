"""``pretextgen inspect OUT_DIR``: a terminal summary of a build (``summary``), a contact sheet
(``--sheet``, ``sheet``), one self-contained HTML page (``--html``, ``page``) and the shortcut audit
(``--audit``, see ``audit.py``); for a training run's folder, the run's summary (``run``).

Samples are drawn the way a person checks them, by their task's ``Task.draw`` (declared in the
task's file, built from ``pretextgen.drawing``; ``draw_generic`` shows any image-like field
otherwise): jigsaw tiles put back by the inverse permutation, the context pair on its source with
the label as an arrow, rotations turned back, masks overlaid, L / ab / colour side by side.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import PretextgenError
from ..shards import read_manifest, read_samples
from .page import html_page
from .run import is_run, run_lines
from .sheet import Context, contact_sheet, draw, draw_generic, drawn_samples, make_context, pick, png_bytes
from .summary import histogram_lines, summary_lines, written

__all__ = ["Context", "contact_sheet", "draw", "draw_generic", "drawn_samples", "histogram_lines", "html_page",
           "inspect_cmd", "make_context", "pick", "png_bytes", "read_samples", "summary_lines", "written"]


def inspect_cmd(out_dir, sheet=None, page=None, samples: int = 12, audit: bool = False, source=None) -> int:
    """The ``pretextgen inspect`` command: prints the summary; writes the sheet / page if asked.
    ``source``: where the build's sources are now (default: the manifest's). A training run's folder
    gets its run summary instead (``run.run_lines``)."""
    out = Path(out_dir)
    if is_run(out):
        asked = [flag for flag, given in (("--sheet", sheet), ("--html", page), ("--audit", audit)) if given]
        if asked:
            raise PretextgenError(f"{out} is a training run, not a build; {', '.join(asked)}: for builds only "
                                  "(config.json's \"data\" names the build it trained on)")
        print("\n".join(run_lines(out)))
        return 0
    read_manifest(out)  # one clear error for a folder that is not a (merged) build
    if samples < 1:
        raise PretextgenError("--samples must be at least 1")
    lines = summary_lines(out)
    print("\n".join(lines))
    audit_lines = None
    if audit:
        from ..audit import audit as run_audit

        try:
            audit_lines = run_audit(out).lines()
        except PretextgenError as e:  # a task without classes to predict: say so, draw anyway
            audit_lines = [f"shortcut audit: not applicable: {e}"]
        print("\n".join(audit_lines))
    if sheet or page:
        ctx = make_context(out, source)
        drawn = drawn_samples(out, samples, ctx)
        note = ctx.missing_note()
        if note:
            print(note)
        if sheet and not drawn:
            print("contact sheet: not written (the build holds no samples yet)")
        elif sheet:
            Path(sheet).write_bytes(png_bytes(contact_sheet([(p, c) for p, c, _ in drawn])))
            print(f"contact sheet: {sheet} ({len(drawn)} samples)")
        if page:
            Path(page).write_text(html_page(out, drawn, lines, audit_lines))
            print(f"page: {page}")
    return 0
