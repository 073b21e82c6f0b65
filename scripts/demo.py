"""A demo in the browser (needs `pip install "hf-vqvae[demo]"`): upload an image and see its reconstruction, its code
map, its bits and its PSNR; draw samples by class, seed and temperature; hear speech reconstructed, converted to
another speaker and generated; pick a trajectory and actions and see the predicted frames as a GIF.

    python scripts/demo.py --pipeline outputs/prior/pipeline
    python scripts/demo.py --pipeline org/vqvae-pipeline outputs/world-prior/pipeline --server_port 7861
    python scripts/demo.py --pipeline outputs/world-video-prior/pipeline --trajectories outputs/world-trajectories

Without --pipeline it shows the README's quick-start pipelines that exist. It serves on 127.0.0.1 only unless
--server_name says otherwise; `python scripts/demo.py --help` lists every flag; docs/demo.md describes it.
"""

from hf_vqvae.commands.demo.app import main


if __name__ == "__main__":
    main()
