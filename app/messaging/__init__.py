"""Messaging channels (SMS, WhatsApp, WeChat, Messenger): provider adapters
(``providers``), webhook ingress (``webhooks``, ``ingest``), inbound media (``media``)
and outbound senders (``senders``). See docs/decisions/0019-messaging-channels.md."""
