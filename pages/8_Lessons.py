"""Lessons: one guided walk per seed study — predict first, then see the data, then the paper."""

import pandas as pd
import streamlit as st

import ui
from core.errors import RankScopeError
from core.lessons import LESSONS, lesson_data

ui.page_setup("Lessons", "🎓")
sidebar_ranker, sidebar_source = ui.sidebar()
st.title("Lessons")
st.caption("Three guided lessons, one per study RankScope reproduces. Each step explains one "
           "idea and asks you to predict what the data will show before it is revealed; the "
           "last step puts the paper's finding next to ours. The first reveal runs the study "
           "(under a minute on a laptop CPU); after that everything comes from the store.")

names = list(LESSONS)
name = st.radio("Lesson", names, horizontal=True,
                format_func=lambda n: f"{names.index(n) + 1}. {LESSONS[n].title}")
lesson = LESSONS[name]
store = ui.store_or_error()
if store is None:
    st.stop()


@st.cache_data(show_spinner=False)
def lesson_default() -> tuple[str, str]:
    """(collection name, description) of the lessons' own data."""
    collection, _, description = lesson_data()
    return collection.name, description


reached = st.session_state.setdefault(f"lesson-{name}-step", 0)
outcome = st.session_state.get(f"lesson-{name}-outcome")
# The lesson's own ranker and data unless the sidebar's can run it: the same model with
# another adapter, a collection with judgments. Chosen before the first reveal, kept after.
sidebar_collection = ui.collection_or_error(sidebar_source)
offers = []
if lesson.can_run(sidebar_ranker):
    offers.append(("ranker", f"the sidebar's ranker, `{sidebar_ranker}`"))
if sidebar_collection is not None and sidebar_collection.judged \
        and sidebar_collection.name != lesson_default()[0]:
    offers.append(("collection", f"the sidebar's collection, {sidebar_collection.name}"))
chosen = {}
for what, label in offers:
    chosen[what] = st.toggle(f"Use {label}", key=f"lesson-{name}-use-{what}",
                             disabled=outcome is not None,
                             help="Fixed once the first step is revealed; start the lesson "
                                  "again to change it.")
ranker_used = sidebar_ranker if chosen.get("ranker") else lesson.ranker
data_used = None
if chosen.get("collection"):  # its held-out queries when it has a test split (the demo's)
    queries = sidebar_collection.queries
    split = "test" if "split" in queries and (queries["split"] == "test").any() else None
    data_used = (sidebar_collection, split, f"{sidebar_collection.name} (the sidebar's "
                 f"collection{', its test queries' if split else ''})")
data_name, data_said = ((data_used[0].name, data_used[2]) if data_used else lesson_default())
differs = (ranker_used, data_name) != (sidebar_ranker, getattr(sidebar_collection, "name", None))
why = "switch above to use it" if offers else "its steps are written for this model"
st.markdown(f"**This lesson uses** the ranker `{ranker_used}` on {data_said}"
            + (f" — not the sidebar's choice (`{sidebar_ranker}` on {sidebar_source}): {why}"
               if differs else "") + ".  \n"
            f"**Paper:** {lesson.paper}")


def reveal() -> None:
    """Run the lesson's analyses (from the store when they are there) with a progress bar."""
    bar = st.progress(0.0, text="Starting …")

    def show(done, total, stage):
        bar.progress(min(done / max(total, 1), 1.0), text=f"{stage}: {done} of {total}")

    try:
        result = lesson.run(store, ui.get_ranker, progress=show, ranker=ranker_used,
                            data=data_used)
    except RankScopeError as error:
        bar.empty()
        st.error(str(error))
        st.stop()
    bar.empty()
    st.session_state[f"lesson-{name}-outcome"] = result


for index, step in enumerate(lesson.steps[:reached + 1]):
    with st.container(border=True):
        st.markdown(f"#### Step {index + 1}. {step.title}")
        st.markdown(step.explain)
        guess_key = f"lesson-{name}-guess-{index}"
        revealed = index < reached or (outcome is not None and index == reached
                                       and st.session_state.get(f"lesson-{name}-shown-{index}"))
        kept = st.session_state.get(f"lesson-{name}-kept-{index}")  # survives switching lessons
        if step.question:
            st.radio(f"**Predict first:** {step.question}", step.choices,
                     index=step.choices.index(kept) if kept in step.choices else None,
                     key=guess_key, disabled=bool(revealed))
        if not revealed:
            ready = not step.question or st.session_state.get(guess_key) is not None
            if st.button("Reveal", key=f"lesson-{name}-reveal-{index}", type="primary",
                         disabled=not ready,
                         help=None if ready else "Make your prediction first."):
                if outcome is None:
                    reveal()
                st.session_state[f"lesson-{name}-kept-{index}"] = st.session_state.get(guess_key)
                st.session_state[f"lesson-{name}-shown-{index}"] = True
                st.rerun()
            continue
        outcome = st.session_state[f"lesson-{name}-outcome"]
        st.info(outcome.verdict(index, kept))
        figure = lesson.figures[index] if index < len(lesson.figures) else None
        if figure is not None:
            ui.chart_with_exports(outcome.charts[figure], outcome.tables.get(
                figure, next(iter(outcome.tables.values()))), f"lesson-{name}-{index + 1}-{figure}")
        if index == reached and index + 1 < len(lesson.steps):
            if st.button("Next step", key=f"lesson-{name}-next-{index}"):
                st.session_state[f"lesson-{name}-step"] = index + 1
                st.rerun()

outcome = st.session_state.get(f"lesson-{name}-outcome")
if outcome is not None and reached + 1 == len(lesson.steps) \
        and st.session_state.get(f"lesson-{name}-shown-{reached}"):
    st.subheader("Your predictions")
    st.dataframe(pd.DataFrame([
        {"step": f"{i + 1}. {s.title}", "your prediction": st.session_state.get(
            f"lesson-{name}-kept-{i}"), "the data": outcome.answers[i]}
        for i, s in enumerate(lesson.steps) if s.question]), hide_index=True)
    st.caption(f"{outcome.when()}; {ranker_used} on {outcome.data}. Headless: "
               f"`python -m core lesson {name} --out lesson-{name}` writes the figures (PNG) "
               "and tables (CSV) and prints these findings.")
    ui.download_run(f"lesson-{name}", {"lesson": name, "ranker": ranker_used,
                                       "data": outcome.data, "findings": outcome.findings},
                    outcome.tables, outcome.charts,
                    f"python -m core lesson {name} --out lesson-{name}")
    if st.button("Start this lesson again"):
        for key in [k for k in st.session_state if str(k).startswith(f"lesson-{name}-")]:
            del st.session_state[key]
        st.rerun()
