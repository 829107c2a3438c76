r"""Builds an FMA config once, for reuse through TFDS from any project.

  python -m tfds_fma.build --config small --manual_dir ~/fma [--data_dir ~/tensorflow_datasets]

The equivalent of `tfds build fma --imports tfds_fma --config small --manual_dir ...`, whose
CLI needs apache-beam installed even for datasets that do not use it.

With the `beam` extra installed (`pip install 'jaxgenre[beam]'`), `--beam_pipeline_options`
builds on Apache Beam instead of this process's threads, with the same flags as `tfds build`:

  python -m tfds_fma.build --config large --manual_dir ~/fma \
      --beam_pipeline_options=runner=DirectRunner,direct_num_workers=8,direct_running_mode=multi_processing
"""
import argparse

import tensorflow_datasets as tfds

import tfds_fma


def main(argv=None):
    names = [c.name for c in tfds_fma.Builder.BUILDER_CONFIGS]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, choices=names)
    ap.add_argument("--manual_dir", default=None, help="where the FMA zips or folders are")
    ap.add_argument("--data_dir", default=None, help="TFDS data dir (default ~/tensorflow_datasets)")
    ap.add_argument("--beam_pipeline_options", default=None,
                    help="build with Apache Beam: comma-separated pipeline flags without '--', "
                         "as for `tfds build` (e.g. runner=DirectRunner,direct_num_workers=8); "
                         "needs the `beam` extra")
    a = ap.parse_args(argv)
    download_config = tfds.download.DownloadConfig(manual_dir=a.manual_dir)
    if a.beam_pipeline_options:
        try:
            from apache_beam.options.pipeline_options import PipelineOptions
        except ImportError as e:
            raise SystemExit("--beam_pipeline_options needs apache-beam: pip install "
                             "'jaxgenre[beam]' (or drop the flag to build without Beam)") from e
        download_config.beam_options = PipelineOptions(
            flags=[f"--{opt}" for opt in a.beam_pipeline_options.split(",")])
    builder = tfds.builder(f"fma/{a.config}", data_dir=a.data_dir)
    builder.download_and_prepare(download_config=download_config)
    print(f"fma/{a.config} in {builder.data_dir}: "
          + ", ".join(f"{k} {v.num_examples}" for k, v in builder.info.splits.items())
          + f"; skipped {len(builder.info.metadata['skipped'])} (info.metadata['skipped'])")


if __name__ == "__main__":
    main()
