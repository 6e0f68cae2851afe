"""Built-in zoo entries: the cards shipped under ``registry/models``, registered through the public hook."""
import sys

from ganzoo.hookspecs import hookimpl


@hookimpl
def register_models(register):
    from ganzoo.zoo import shipped_cards

    seen = set()
    for card in shipped_cards(skip_bad=True):  # one bad card must not hide the zoo
        if card.id in seen:  # a copied card folder: the first keeps the id, as for every name
            print(f"warning: model card skipped: {card.directory} has the id {card.id!r} of another card",
                  file=sys.stderr)
            continue
        seen.add(card.id)
        headline = card.headline_text()
        register(card.id, card, description=f"{card.architecture} on {card.dataset}"
                 + (f"; {headline}" if headline else ""))
