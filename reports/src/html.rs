//! `index.html` of `collapse-bench report`: the text report and every
//! plot's SVG on one self-contained page, built in memory from the same
//! text and SVG documents the report writes beside it.

use crate::plots::Plot;
use std::fmt::Write as _;

/// `s` safe inside HTML text (`&`, `<` and `>` escaped).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The `<svg` element of an SVG document, without anything before it (an
/// XML declaration or a doctype, which have no place inside HTML).
fn svg_element(svg: &str) -> &str {
    let svg = svg.trim_start_matches(|c| c != '<');
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// One page: `text` (the plain report) in a `<pre>`, then each plot's SVG
/// inline in a `<figure>` whose id and caption are its stem, in the order
/// given. It needs no other file.
pub fn index_html(text: &str, plots: &[Plot]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>collapse-bench report</title>\n\
         <style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{font-size:13px}\
         figure{margin:1em 0}svg{max-width:100%;height:auto}</style></head><body>\n\
         <h1>collapse-bench report</h1>\n<pre>",
    );
    html.push_str(&escape(text));
    html.push_str("</pre>\n");
    for plot in plots {
        let (stem, svg) = (&plot.stem, svg_element(&plot.svg));
        let _ = writeln!(html, "<figure id=\"{stem}\">{svg}<figcaption>{stem}</figcaption></figure>");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(stem: &str, svg: &str) -> Plot {
        Plot { stem: stem.into(), svg: svg.into(), png: vec![] }
    }

    #[test]
    fn the_page_holds_the_escaped_text_and_each_svg_inline() {
        let plots = [
            plot("throughput", "<?xml version=\"1.0\"?>\n<svg width=\"1\"><text>a</text></svg>\n"),
            plot("pml-hold-x", "<svg width=\"2\"></svg>"),
        ];
        let html = index_html("v1 < v2 & more > less", &plots);
        assert!(html.starts_with("<!DOCTYPE html>\n"), "{html}");
        assert!(html.contains("<pre>v1 &lt; v2 &amp; more &gt; less</pre>\n"), "{html}");
        assert!(!html.contains("<?xml"), "no XML declaration inside HTML: {html}");
        let first = html.find("<figure id=\"throughput\"><svg width=\"1\"><text>a</text></svg>\n").unwrap();
        let second = html.find("<figure id=\"pml-hold-x\"><svg width=\"2\"></svg><figcaption>pml-hold-x").unwrap();
        assert!(first < second, "in the order given: {html}");
        assert!(html.ends_with("</body></html>\n"));
    }
}
