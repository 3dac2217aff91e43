// Click to enlarge: each image in the article becomes a link to the full-size file (a new tab; the
// browser shows the PNG at its own size, zoomable on a phone). Images already inside a link are left
// alone. Jupyter Book adds every .js file in _static to each page.
(function () {
  "use strict";
  function linkImages() {
    const article = document.querySelector("article.bd-article");
    if (!article) return;
    for (const img of article.querySelectorAll("img")) {
      const src = img.getAttribute("src");
      if (!src || img.closest("a")) continue;
      const link = document.createElement("a");
      link.href = src;
      link.className = "tn-enlarge";
      link.target = "_blank";
      link.rel = "noopener";
      link.title = "Open the full-size image";
      img.replaceWith(link);
      link.appendChild(img);
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", linkImages);
  } else {
    linkImages();
  }
})();
