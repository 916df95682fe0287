// Render the maths that pymdownx.arithmatex (generic mode) leaves as \( ... \) and \[ ... \]
// inside <span|div class="arithmatex">, with the KaTeX bundled in docs/javascripts/katex/
// (npm package katex 0.16.47, MIT licence): the site needs no network. The markdown cells of
// the example notebooks (mkdocs-jupyter: .jp-RenderedMarkdown) keep Jupyter's $ ... $ and
// $$ ... $$, rendered here too.
document$.subscribe(({ body }) => {
  for (const element of body.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  }
  for (const element of body.querySelectorAll(".jp-RenderedMarkdown")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "$$", right: "$$", display: true },
        { left: "$", right: "$", display: false },
      ],
      throwOnError: false,
    });
  }
});
