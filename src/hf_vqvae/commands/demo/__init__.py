"""A demo people open in a browser: a Gradio app (the `demo` extra) with one tab per pipeline given by Hub id or
folder, behind `scripts/demo.py`.

- `pipelines`: loading a pipeline of the package's pipeline classes, and the kind of tab that shows it;
- `image`, `speech`, `video`: what the image, hierarchy, speech and video tabs compute, plain functions over a
  pipeline (no Gradio);
- `app`: the Gradio layout, the command line and the launch (local only: no share link, no analytics);
- `space`: the folder of a Hugging Face Space that serves the app (`scripts/make_space.py`).
"""
