// Render the maths that pymdownx.arithmatex (generic mode) leaves as \( ... \) and \[ ... \]
// inside <span|div class="arithmatex">, with the KaTeX bundled in docs/javascripts/katex/
// (npm package katex 0.16.47, MIT licence): the site needs no network.
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
});
