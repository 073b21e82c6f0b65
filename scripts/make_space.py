"""Write the folder of a Hugging Face Space that serves the demo (scripts/demo.py) over pipelines on the Hub, and
optionally push it.

    python scripts/make_space.py --pipeline org/vqvae-pipeline --output_dir outputs/space
    python scripts/make_space.py --pipeline org/vqvae-pipeline org/world-video-prior \
        --trajectories org/world-trajectories --push_to_hub --space_id org/hf-vqvae-demo

The folder holds README.md (the Space's front matter: title, sdk: gradio, sdk_version, app_file), app.py and
requirements.txt; `python scripts/make_space.py --help` lists every flag.
"""

from hf_vqvae.commands.demo.space import main


if __name__ == "__main__":
    main()
