"""The program's picture: its graph as a PNG and as Mermaid text.

    write_program_png(program, "program.png")   # modules, edges, data-model fields, trainable state
    mermaid(program)                              # "flowchart TD ..." for a ```mermaid block

Drawn with matplotlib alone (already a dependency; no graphviz binary to install): programs are
small graphs (1-10 modules), so the layout is computed here - layers by longest path from the
inputs, an edge that skips layers bends around the boxes in between, boxes ordered to cross
few edges - and each box is sized from its measured text, so no text overlaps.
"""

from __future__ import annotations

import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path

from promptrl.data_model import _annotation_to_spec

__all__ = ["NodeLabel", "describe", "mermaid", "program_figure", "write_program_png"]

WRAP = 46  # characters per field line: a wide schema wraps instead of widening the picture
DPI = 150


@dataclass
class NodeLabel:
    """What one box says. `trainable` is None for a node without trainable state (an Input)."""

    name: str
    kind: str
    title: str
    model: str | None = None
    schema: str | None = None  # the output data model's name
    fields: list[str] = field(default_factory=list)  # "answer: float - The numerical answer"
    state: str | None = None  # "trainable: 3 examples, instructions 120 chars" / "not trainable"
    trainable: bool | None = None


def _type_name(annotation) -> str:
    try:
        spec = _annotation_to_spec(annotation)
    except TypeError:
        name = getattr(annotation, "__name__", None)
        return name if name and not typing.get_args(annotation) else str(annotation).replace("typing.", "")
    if spec["type"] == "choice":
        return "choice[" + "|".join(str(c) for c in spec["choices"]) + "]"
    return spec["type"]


def _state_size(variables: dict) -> str:
    """The size of a module's trainable state, e.g. "3 examples, instructions 120 chars"."""
    parts = []
    for key, value in variables.items():
        if isinstance(value, (list, tuple, dict)):
            parts.append(f"{len(value)} {key}")
        elif isinstance(value, str):
            parts.append(f"{key} {len(value)} chars")
        elif value is None:
            parts.append(f"{key} default")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def describe(program, show_module_names: bool = True, show_schemas: bool = True, show_trainable: bool = True,
             variables: dict | None = None) -> tuple[list[NodeLabel], list[tuple[str, str]]]:
    """The picture's content: one label per node (in topological order) and the (parent, child) edges.
    `variables` ({module: variables}, e.g. a saved checkpoint's) replaces the modules' own state."""
    labels = []
    for node in program.nodes:
        module = node.module
        kind = type(module).__name__ if module is not None else "Input"
        label = NodeLabel(name=node.name, kind=kind, title=f"{node.name} ({kind})" if show_module_names else kind)
        lm = getattr(module, "language_model", None)
        label.model = getattr(lm, "model", None)
        if show_schemas:
            label.schema = node.data_model.__name__
            for name, info in node.data_model.model_fields.items():
                line = f"{name}: {_type_name(info.annotation)}"
                label.fields.append(f"{line} - {info.description}" if info.description else line)
        state = module.get_variables() if module is not None else None
        if state is not None and variables and node.name in variables:
            state = variables[node.name]
        label.trainable = None if module is None else state is not None
        if show_trainable and module is not None:
            label.state = f"trainable: {_state_size(state)}" if state is not None else "not trainable"
        labels.append(label)
    edges = [(parent.name, node.name) for node in program.nodes for parent in node.parents]
    return labels, edges


# ----------------------------------------------------------------------------- Mermaid


def _mermaid_id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _mermaid_text(text: str) -> str:
    # inside ["..."] Mermaid reads #...; as an entity and "<...>" as HTML: write them as entities
    return text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def mermaid(program, show_module_names: bool = True, show_schemas: bool = True, show_trainable: bool = True,
            variables: dict | None = None) -> str:
    """The graph as a Mermaid flowchart (the body of a ```mermaid block): one node per module or
    input with the same lines as the PNG, one arrow per edge, trainable modules styled green."""
    labels, edges = describe(program, show_module_names, show_schemas, show_trainable, variables)
    lines = ["flowchart TD"]
    for label in labels:
        parts = [f"<b>{_mermaid_text(label.title)}</b>"]
        parts += [_mermaid_text(t) for t in ([label.model] if label.model else [])]
        parts += [_mermaid_text(t) for t in ([f"-> {label.schema}"] if label.schema else []) + label.fields]
        parts += [_mermaid_text(label.state)] if label.state else []
        lines.append(f'    {_mermaid_id(label.name)}["{"<br/>".join(parts)}"]')
    lines += [f"    {_mermaid_id(a)} --> {_mermaid_id(b)}" for a, b in edges]
    trainable = [_mermaid_id(label.name) for label in labels if label.trainable]
    if show_trainable and trainable:
        lines.append("    classDef trainable fill:#e8f5e9,stroke:#2e7d32,stroke-width:2px")
        lines.append(f"    class {','.join(trainable)} trainable")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- layout

_PAD = 0.12  # inches inside a box
_LAYER_GAP = 0.55
_BOX_GAP = 0.35
_LANE = 0.3  # width kept free in a layer for an edge passing through it
_FONTS = {  # section -> (size, weight, family)
    "title": (11, "bold", "sans-serif"),
    "model": (9, "normal", "sans-serif"),
    "schema": (9, "bold", "monospace"),
    "field": (9, "normal", "monospace"),
    "state": (9, "bold", "sans-serif"),
}
_LINE = 1.3 / 72  # line height in inches per point of font size


def _box_lines(label: NodeLabel) -> list[tuple[str, str]]:
    """(section, text) lines of a box, long lines wrapped."""
    lines = [("title", t) for t in textwrap.wrap(label.title, 40)]
    if label.model:
        lines += [("model", t) for t in textwrap.wrap(label.model, WRAP)]
    if label.schema:
        lines.append(("schema", f"-> {label.schema}"))
        for text in label.fields:
            lines += [("field", t) for t in textwrap.wrap(text, WRAP, subsequent_indent="    ")]
    if label.state:
        lines += [("state", t) for t in textwrap.wrap(label.state, WRAP)]
    return lines


def _layers(labels, edges) -> tuple[list[list[str]], list[list[str]]]:
    """Nodes (and one lane per edge per layer it crosses) by layer, ordered to cross few edges;
    and each edge's chain of points, parent ... child."""
    parents: dict[str, list[str]] = {label.name: [] for label in labels}
    for a, b in edges:
        parents[b].append(a)
    depth: dict[str, int] = {}
    for label in labels:  # topological order: parents first
        depth[label.name] = 1 + max((depth[p] for p in parents[label.name]), default=-1)
    layers = [[] for _ in range(max(depth.values()) + 1)]
    for label in labels:
        layers[depth[label.name]].append(label.name)
    chains = []
    for i, (a, b) in enumerate(edges):
        chain = [a]
        for d in range(depth[a] + 1, depth[b]):
            lane = f"\0lane{i}_{d}"
            layers[d].append(lane)
            chain.append(lane)
        chains.append(chain + [b])
    links = [(c[j], c[j + 1]) for c in chains for j in range(len(c) - 1)]
    for _ in range(2):  # barycenter sweeps, down then up; ties keep the program's order
        for down in (True, False):
            rows = range(1, len(layers)) if down else range(len(layers) - 2, -1, -1)
            for d in rows:
                near = layers[d - 1] if down else layers[d + 1]
                pos = {n: i for i, n in enumerate(near)}

                def barycenter(n, pos=pos, down=down, d=d):
                    linked = [pos[a] for a, b in links if b == n and a in pos] if down else \
                        [pos[b] for a, b in links if a == n and b in pos]
                    return sum(linked) / len(linked) if linked else layers[d].index(n)

                layers[d] = sorted(layers[d], key=barycenter)
    return layers, chains


def program_figure(program, show_module_names: bool = True, show_schemas: bool = True, show_trainable: bool = True,
                   variables: dict | None = None):
    """The picture as a matplotlib Figure (nothing written). Boxes carry gid "node:<name>", arrows
    "edge:<parent>-><child>", so tests and notebooks can read what was drawn."""
    # matplotlib only here: `mermaid` and `describe` stay cheap to import
    from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MplPath

    labels, edges = describe(program, show_module_names, show_schemas, show_trainable, variables)
    by_name = {label.name: label for label in labels}
    renderer = RendererAgg(10, 10, DPI)
    props = {k: FontProperties(family=fam, weight=w, size=s) for k, (s, w, fam) in _FONTS.items()}

    def width(section: str, text: str) -> float:
        return renderer.get_text_width_height_descent(text, props[section], ismath=False)[0] / DPI

    def height(lines) -> float:
        return sum(_FONTS[s][0] * _LINE for s, _ in lines)

    content = {label.name: _box_lines(label) for label in labels}
    size, band = {}, {}
    for name, lines in content.items():
        body = [line for line in lines if line[0] != "title"]
        band[name] = height(lines) - height(body) + 1.5 * _PAD  # the coloured title band
        w = max(width(s, t) for s, t in lines) + 2 * _PAD
        size[name] = (max(w, 1.2), band[name] + (height(body) + 2 * _PAD if body else 0))

    layers, chains = _layers(labels, edges)
    title = [program.name] + textwrap.wrap(program.description or "", 80)
    top = 0.25 + len(title) * 12 * _LINE + 0.2
    row_widths = [sum(size[n][0] if n in size else _LANE for n in row) + _BOX_GAP * (len(row) - 1) for row in layers]
    fig_w = max(max(row_widths), max(width("title", t) for t in title)) + 0.6
    centre, y = {}, top
    for row, row_w in zip(layers, row_widths):
        height = max(size[n][1] for n in row if n in size) if any(n in size for n in row) else 0.3
        x = (fig_w - row_w) / 2
        for n in row:
            w = size[n][0] if n in size else _LANE
            centre[n] = (x + w / 2, y, y + (size[n][1] if n in size else height))  # x, top, bottom
            x += w + _BOX_GAP
        y += height + _LAYER_GAP
    fig_h = y - _LAYER_GAP + 0.3

    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, fig_w)
    ax.set_ylim(fig_h, 0)  # inches, y down
    ax.axis("off")
    ty = 0.25
    for i, text in enumerate(title):
        section = "title" if i == 0 else "model"
        ax.text(fig_w / 2, ty, text, ha="center", va="top", fontproperties=props[section])
        ty += _FONTS[section][0] * _LINE

    for name, lines in content.items():
        label = by_name[name]
        cx, y0, _ = centre[name]
        w, h = size[name]
        x0 = cx - w / 2
        colour = "#1f3a5f" if label.trainable is None else "#455a64" if not show_trainable else \
            "#2e7d32" if label.trainable else "#616161"
        ax.add_patch(FancyBboxPatch((x0, y0), w, h, boxstyle="round,pad=0,rounding_size=0.06", facecolor="white",
                                    edgecolor=colour, linewidth=1.6, zorder=2, gid=f"node:{name}"))
        ax.add_patch(FancyBboxPatch((x0, y0), w, band[name], boxstyle="round,pad=0,rounding_size=0.06",
                                    facecolor=colour, edgecolor=colour, linewidth=1.6, zorder=2))
        ty = y0 + 0.75 * _PAD
        for section, text in lines:
            if section != "title" and ty < y0 + band[name]:
                ty = y0 + band[name] + _PAD
            colour_text = "white" if section == "title" else colour if section == "state" else "#212121"
            ax.text(x0 + _PAD, ty, text, ha="left", va="top", fontproperties=props[section], color=colour_text,
                    zorder=3)
            ty += _FONTS[section][0] * _LINE

    # arrows: leave a parent's bottom and enter a child's top at spread points, ordered by x
    outs = {n: sorted((i for i, c in enumerate(chains) if c[0] == n), key=lambda i: centre[chains[i][1]][0])
            for n in size}
    ins = {n: sorted((i for i, c in enumerate(chains) if c[-1] == n), key=lambda i: centre[chains[i][-2]][0])
           for n in size}

    def port(name: str, order: list[int], i: int) -> float:
        w = size[name][0] * 0.6
        return centre[name][0] - w / 2 + w * (order.index(i) + 1) / (len(order) + 1)

    for i, chain in enumerate(chains):
        a, b = chain[0], chain[-1]
        points = [(port(a, outs[a], i), centre[a][2])]
        for lane in chain[1:-1]:
            points += [(centre[lane][0], centre[lane][1]), (centre[lane][0], centre[lane][2])]
        points.append((port(b, ins[b], i), centre[b][1]))
        codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(points) - 1)
        ax.add_patch(FancyArrowPatch(path=MplPath(points, codes), arrowstyle="-|>", mutation_scale=14,
                                     linewidth=1.4, color="#424242", zorder=1, gid=f"edge:{a}->{b}"))
    return fig


def write_program_png(program, path, show_module_names: bool = True, show_schemas: bool = True,
                      show_trainable: bool = True, variables: dict | None = None) -> Path:
    """Draw the program's graph to `path` (PNG, parent folders created, written atomically)."""
    import io

    from promptrl.io import atomic_write_bytes

    fig = program_figure(program, show_module_names, show_schemas, show_trainable, variables)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        fig.clear()
    return atomic_write_bytes(path, buffer.getvalue())
