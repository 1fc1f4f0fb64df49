"""XMP packets made true for an upscaled picture: sizes, orientation and resolution where the packet
states them, its thumbnails dropped, and an event appended to its history (xmpMM:History).

XMP is RDF/XML; a property is an attribute of an rdf:Description (`tiff:Orientation="6"`) or an element
in it (`<tiff:Orientation>6</tiff:Orientation>`), so both forms are edited. Namespaces are matched by URI,
and the packet keeps its own prefixes (minidom writes what it read). A packet that does not parse, or
that declares a DTD, is replaced by a new one holding only the history.
"""

from __future__ import annotations

from xml.dom import minidom
from xml.parsers.expat import ExpatError

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
TIFF = "http://ns.adobe.com/tiff/1.0/"
EXIF = "http://ns.adobe.com/exif/1.0/"
XMP = "http://ns.adobe.com/xap/1.0/"
XMP_MM = "http://ns.adobe.com/xap/1.0/mm/"
ST_EVT = "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"
_XMLNS = "http://www.w3.org/2000/xmlns/"

_PACKET_START = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_PACKET_END = '\n<?xpacket end="w"?>'
_EMPTY = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}"/></x:xmpmeta>'


Name = tuple[str, str]  # (namespace URI, local name)


def updated(packet: bytes | None, values: dict[Name, str], removed: set[Name], event: dict[str, str]) -> bytes:
    """The packet with each (namespace, name) of `values` that it holds set to its new value, those of
    `removed` taken out, and `event` (stEvt fields: action, softwareAgent, parameters) appended to its
    history; a new packet with only the history when there is none or it cannot be read."""
    document = _parse(packet) or minidom.parseString(_EMPTY)
    rdf = _first(document, RDF, "RDF")
    if rdf is None:  # XML, but not RDF: start afresh
        document = minidom.parseString(_EMPTY)
        rdf = _first(document, RDF, "RDF")
    for description in document.getElementsByTagNameNS(RDF, "Description"):
        _edit(description, values, removed)
    _append_event(document, rdf, event)
    return (_PACKET_START + document.documentElement.toxml() + _PACKET_END).encode("utf-8")


def _parse(packet: bytes | None):
    if not packet or b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        return None
    try:
        return minidom.parseString(packet.rstrip(b"\0 \t\r\n"))
    except (ExpatError, ValueError):
        return None


def _first(document, namespace: str, name: str):
    found = document.getElementsByTagNameNS(namespace, name)
    return found[0] if found else None


def _edit(description, values: dict, removed: set) -> None:
    for namespace, name in list(description.attributes.keysNS()):
        key = (namespace, name)
        if key in removed:
            description.removeAttributeNS(namespace, name)
        elif key in values:
            description.setAttributeNS(namespace, description.getAttributeNodeNS(namespace, name).name, values[key])
    for child in list(description.childNodes):
        key = (child.namespaceURI, child.localName) if child.nodeType == child.ELEMENT_NODE else None
        if key in removed:
            description.removeChild(child)
        elif key in values and all(node.nodeType == node.TEXT_NODE for node in child.childNodes):  # a simple value
            for node in list(child.childNodes):
                child.removeChild(node)
            child.appendChild(child.ownerDocument.createTextNode(values[key]))


def _append_event(document, rdf, event: dict[str, str]) -> None:
    """Add a resource event to the first xmpMM:History sequence, or to a new one in a description of its own."""
    history = _first(document, XMP_MM, "History")
    sequence = _first(history, RDF, "Seq") if history is not None else None
    if sequence is None:
        description = document.createElementNS(RDF, _qualified(rdf, "Description"))
        description.setAttributeNS(RDF, _qualified(rdf, "about"), "")
        description.setAttributeNS(_XMLNS, "xmlns:xmpMM", XMP_MM)
        history = document.createElementNS(XMP_MM, "xmpMM:History")
        sequence = document.createElementNS(RDF, _qualified(rdf, "Seq"))
        rdf.appendChild(description)
        description.appendChild(history)
        history.appendChild(sequence)
    item = document.createElementNS(RDF, _qualified(sequence, "li"))
    item.setAttributeNS(RDF, _qualified(sequence, "parseType"), "Resource")
    item.setAttributeNS(_XMLNS, "xmlns:stEvt", ST_EVT)  # declared here, so no prefix of the packet's can clash
    for field, text in event.items():
        element = document.createElementNS(ST_EVT, f"stEvt:{field}")
        element.appendChild(document.createTextNode(text))
        item.appendChild(element)
    sequence.appendChild(item)


def _qualified(element, name: str) -> str:
    """`name` with the prefix `element` uses for the RDF namespace (usually rdf:)."""
    return f"{element.prefix}:{name}" if element.prefix else name
