"""MkDocs hooks (``hooks:`` in mkdocs.yml): results pages filled from the files of results/.

- ``on_files`` publishes every figure under ``results/`` and ``benchmarks/results/`` at
  ``data/<path>`` in the site, so pages can show them without copies in ``docs/``;
- ``on_page_markdown`` replaces the ``<!-- gen:... -->`` directives of a page with the tables
  and figures they name (`gen_results_pages.expand`).
"""

import sys
from pathlib import Path

from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_results_pages  # noqa: E402


def on_files(files, config):
    for path in gen_results_pages.figure_files():
        files.append(
            File.generated(config, gen_results_pages.figure_uri(path), abs_src_path=str(path))
        )
    return files


def on_page_markdown(markdown, page, config, files):
    return gen_results_pages.expand(markdown, page.file.src_uri)
