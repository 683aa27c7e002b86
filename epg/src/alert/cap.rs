//! CAP 1.2 XML (OASIS CAP v1.2 §3) into the element tree, then the shared validation.

use roxmltree::{Document, Node};

use super::element::{self, Element, Syntax};
use super::{Alert, AlertError, Location, CAP_NAMESPACE};

/// Deeper than any CAP element (alert/info/area/geocode/value is 5 levels); below this, child
/// elements are not kept, so a hostile document cannot make the tree deep. Their parent then
/// fails validation as a text element with children.
const MAX_DEPTH: usize = 8;

/// Parses and validates a CAP 1.2 `<alert>` document (see the [module docs](super) for the
/// rules). A DTD is refused (no entity expansion).
pub fn parse_cap(xml: &str) -> Result<Alert, AlertError> {
    let doc = Document::parse(xml).map_err(|e| {
        let pos = e.pos();
        let msg = e.to_string();
        // roxmltree ends its messages with " at row:col", which the error already carries.
        let msg = msg.strip_suffix(&format!(" at {pos}")).unwrap_or(&msg);
        AlertError::Xml {
            line: pos.row,
            col: pos.col,
            msg: msg.to_owned(),
        }
    })?;
    let root = doc.root_element();
    let name = root.tag_name();
    if name.namespace() != Some(CAP_NAMESPACE) || name.name() != "alert" {
        return Err(AlertError::Root {
            found: format!("{{{}}}{}", name.namespace().unwrap_or(""), name.name()),
            at: location(&doc, root),
        });
    }
    element::alert(&tree(&doc, root, 0), Syntax::Xml)
}

/// The element and its children in the CAP namespace; text nodes (and CDATA) concatenated
/// and trimmed. Elements of other namespaces, comments and processing instructions are
/// skipped.
fn tree(doc: &Document<'_>, node: Node<'_, '_>, depth: usize) -> Element {
    let mut text = String::new();
    let mut children = Vec::new();
    for child in node.children() {
        if child.is_text() {
            text.push_str(child.text().unwrap_or(""));
        } else if child.is_element() && child.tag_name().namespace() == Some(CAP_NAMESPACE) {
            if depth < MAX_DEPTH {
                children.push(tree(doc, child, depth + 1));
            } else {
                children.push(Element {
                    name: child.tag_name().name().to_owned(),
                    text: String::new(),
                    children: Vec::new(),
                    at: location(doc, child),
                });
            }
        }
    }
    Element {
        name: node.tag_name().name().to_owned(),
        text: text.trim().to_owned(),
        children,
        at: location(doc, node),
    }
}

fn location(doc: &Document<'_>, node: Node<'_, '_>) -> Location {
    let pos = doc.text_pos_at(node.range().start);
    Location::Xml {
        line: pos.row,
        col: pos.col,
    }
}
