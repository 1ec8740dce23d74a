"""`{% tracked_link "https://shop.example.com/offer" %}` in outgoing email templates: the
URL with a signed, expiring token naming the customer and the message (from the context's
`customer` and `message`, or given: `{% tracked_link url customer=c message=m %}`)."""

from django import template

from customers.tracking import tracked_link_url

register = template.Library()


@register.simple_tag(takes_context=True)
def tracked_link(context, url: str, customer=None, message=None) -> str:
    customer = customer or context.get("customer")
    message = message or context.get("message")
    if customer is None:
        return url
    return tracked_link_url(
        url, customer_id=getattr(customer, "pk", customer), message_id=getattr(message, "pk", message)
    )
