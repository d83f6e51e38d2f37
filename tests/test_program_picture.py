"""The program's picture (PNG) and its Mermaid text: what a reader of a run dir relies on."""

import asyncio
import itertools

import matplotlib.image
import pytest
from matplotlib.patches import FancyArrowPatch

import promptrl
from promptrl.errors import UserError
from promptrl.program_picture import mermaid, program_figure, write_program_png
from promptrl.testing import ScriptedLanguageModel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LONG = ("The full text of the customer's support ticket, including the subject line and every "
        "message of the thread so far, quoted as the customer wrote it")


def build(*args):
    return asyncio.run(_build(*args))


async def _build(kind):
    lm = ScriptedLanguageModel(lambda messages, output_model: {}, model="local/smollm2-135m")
    spec = promptrl.data_model_from_spec
    x0 = promptrl.Input(spec("Question", {"question": {"type": "str", "description": "The math word problem"}}),
                        name="question")
    if kind == "chain":
        out = await promptrl.Generator(spec("Answer", {"answer": {"type": "float", "description": "The number"}}),
                                       lm, name="solver", instructions="Solve it step by step.",
                                       examples=[{"input": {"question": "1+1?"}, "output": {"answer": 2.0}}] * 3)(x0)
        return promptrl.Program(x0, out, name="chain", description="One generator")
    draft = await promptrl.Generator(spec("Draft", {"draft": {"type": "str", "description": LONG}}), lm,
                                     name="draft")(x0)
    final = await promptrl.ChainOfThought(spec("Final", {"label": {"type": "choice", "choices": ["a", "b"]}}), lm,
                                          name="final")([x0, draft])  # two parents, one of them two layers up
    return promptrl.Program(x0, final, name="two_parents")


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def node_boxes(fig) -> dict:
    renderer = fig.canvas.get_renderer()
    return {p.get_gid()[len("node:"):]: p.get_window_extent(renderer)
            for p in fig.axes[0].patches if (p.get_gid() or "").startswith("node:")}


def arrows(fig) -> dict:
    renderer = fig.canvas.get_renderer()
    return {p.get_gid(): p.get_window_extent(renderer) for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)}


def program_edges(program) -> set[str]:
    return {f"edge:{parent.name}->{node.name}" for node in program.nodes for parent in node.parents}


# ----------------------------------------------------------------------------- node labels


def test_labels_show_module_names_fields_and_trainable_state_size():
    drawn = "\n".join(texts(program_figure(build("chain"))))
    assert "question (Input)" in drawn and "solver (Generator)" in drawn
    assert "question: str - The math word problem" in drawn
    assert "answer: float - The number" in drawn and "-> Answer" in drawn
    # the state's size: 3 few-shot examples, 22 characters of instructions
    assert "trainable: instructions 22 chars, 3 examples" in drawn
    assert "local/smollm2-135m" in drawn


def test_labels_leave_out_what_is_not_asked():
    drawn = "\n".join(texts(program_figure(build("chain"), show_module_names=False, show_schemas=False,
                                           show_trainable=False)))
    assert "Input" in drawn and "Generator" in drawn  # the kind of each box stays
    for hidden in ("question (Input)", "solver", "answer", "question:", "-> Answer", "trainable", "examples"):
        assert hidden not in drawn


@pytest.mark.parametrize("flag, shown", [("show_module_names", "solver (Generator)"),
                                         ("show_schemas", "answer: float"),
                                         ("show_trainable", "trainable: instructions 22 chars")])
def test_each_flag_controls_its_own_lines(flag, shown):
    program = build("chain")
    flags = dict(show_module_names=False, show_schemas=False, show_trainable=False)
    assert shown not in "\n".join(texts(program_figure(program, **flags)))
    assert shown in "\n".join(texts(program_figure(program, **{**flags, flag: True})))


def test_state_size_follows_training():
    program = build("chain")
    program.set_trainable_variables({"solver": {"instructions": None, "examples": []}})
    assert "trainable: instructions default, 0 examples" in texts(program_figure(program))


# ----------------------------------------------------------------------------- edges and layout


@pytest.mark.parametrize("kind", ["chain", "two_parents"])
def test_one_arrow_per_edge_of_the_graph(kind):
    program = build(kind)
    assert set(arrows(program_figure(program))) == program_edges(program)
    assert len(arrows(program_figure(program))) == sum(len(n.parents) for n in program.nodes)


def test_two_parent_graph_draws_both_edges_from_parent_bottom_to_child_top():
    program = build("two_parents")
    fig = program_figure(program)
    boxes, drawn = node_boxes(fig), arrows(fig)
    assert set(drawn) == {"edge:question->draft", "edge:question->final", "edge:draft->final"}
    for gid, extent in drawn.items():
        parent, child = gid[len("edge:"):].split("->")
        # display y points up: an arrow leaves the parent's bottom edge and ends on the child's top edge
        assert extent.y1 == pytest.approx(boxes[parent].y0, abs=3)
        assert extent.y0 == pytest.approx(boxes[child].y1, abs=3)
        assert extent.x1 > boxes[parent].x0 and extent.x0 < boxes[parent].x1
        assert extent.x1 > boxes[child].x0 and extent.x0 < boxes[child].x1


def test_an_edge_skipping_a_layer_goes_around_the_box_in_between():
    fig = program_figure(build("two_parents"))
    boxes, drawn = node_boxes(fig), arrows(fig)
    skip = drawn["edge:question->final"]
    assert skip.x1 > boxes["draft"].x1  # bent into a lane beside "draft", not through it


def test_boxes_and_texts_do_not_overlap_and_wide_schemas_wrap():
    fig = program_figure(build("two_parents"))
    renderer = fig.canvas.get_renderer()
    extents = [t.get_window_extent(renderer) for ax in fig.axes for t in ax.texts if t.get_text()]
    for a, b in itertools.combinations(extents, 2):
        assert not a.shrunk(0.98, 0.9).overlaps(b.shrunk(0.98, 0.9)), "two texts overlap"
    for a, b in itertools.combinations(node_boxes(fig).values(), 2):
        assert not a.overlaps(b)
    boxes = list(node_boxes(fig).values())
    for extent in extents[1:]:  # every text but the title sits inside a box
        assert any(box.x0 <= extent.x0 and extent.x1 <= box.x1 + 1 for box in boxes)
    lines = [t for t in texts(fig) if "customer" in t or "quoted" in t or "message" in t]
    assert len(lines) >= 3 and max(map(len, lines)) <= 50  # the long description wrapped over lines
    assert fig.get_size_inches()[0] < 9  # and did not widen the picture


# ----------------------------------------------------------------------------- files


def test_write_program_png_writes_a_valid_image(tmp_path):
    path = write_program_png(build("two_parents"), tmp_path / "run" / "program.png")
    assert path == tmp_path / "run" / "program.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert [p.name for p in path.parent.iterdir()] == ["program.png"]  # written atomically, no temp left


def test_utils_plot_program_uses_synalinks_arguments(tmp_path):
    program = build("chain")
    path = promptrl.utils.plot_program(program, to_folder=tmp_path, show_module_names=True, show_schemas=True,
                                       show_trainable=True)
    assert path == tmp_path / "chain.png" and path.read_bytes()[:8] == PNG_MAGIC
    assert promptrl.utils.plot_program(program, to_file="g.png", to_folder=tmp_path) == tmp_path / "g.png"
    with pytest.raises(UserError, match=r"\.png"):
        promptrl.utils.plot_program(program, to_file="g.svg", to_folder=tmp_path)


# ----------------------------------------------------------------------------- Mermaid


def test_mermaid_has_a_node_per_module_and_an_arrow_per_edge():
    program = build("two_parents")
    text = mermaid(program)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert {line.strip() for line in lines if "-->" in line} == {
        "n_question --> n_draft", "n_question --> n_final", "n_draft --> n_final"}
    node_lines = {line.strip().split("[", 1)[0]: line for line in lines if '["' in line}
    assert set(node_lines) == {"n_question", "n_draft", "n_final"}
    assert "final (ChainOfThought)" in node_lines["n_final"]
    assert "label: choice[a|b]" in node_lines["n_final"] and "thinking: str" in node_lines["n_final"]
    assert "class n_draft,n_final trainable" in text  # the Input has no prompts


def test_mermaid_leaves_out_what_is_not_asked_and_escapes_label_text():
    text = mermaid(build("chain"), show_module_names=False, show_schemas=False, show_trainable=False)
    assert "solver" not in text.replace("n_solver", "") and "answer" not in text and "trainable" not in text
    assert "n_question --> n_solver" in text

    async def quoted():
        spec = promptrl.data_model_from_spec("Q", {"q": {"type": "str", "description": 'a "quoted" #1 <b>x</b>'}})
        x0 = promptrl.Input(spec, name="in-put")
        out = await promptrl.Generator(spec, ScriptedLanguageModel(lambda m, o: {}), name="g")(x0)
        return promptrl.Program(x0, out, name="q")

    line = next(line for line in mermaid(asyncio.run(quoted())).splitlines() if line.strip().startswith("n_in_put["))
    label = line.split('["', 1)[1].rsplit('"]', 1)[0]
    assert '"' not in label and "<b>x" not in label  # the label cannot end early or turn into HTML
    assert "#quot;quoted#quot;" in label and "#35;1" in label
