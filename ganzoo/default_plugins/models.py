"""Built-in zoo entries: the cards shipped under ``registry/models``, registered through the public hook."""
from ganzoo.hookspecs import hookimpl


@hookimpl
def register_models(register):
    from ganzoo.zoo import shipped_cards

    for card in shipped_cards(skip_bad=True):  # one bad card must not hide the zoo
        headline = card.headline_text()
        register(card.id, card, description=f"{card.architecture} on {card.dataset}"
                 + (f"; {headline}" if headline else ""))
