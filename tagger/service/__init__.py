"""The service: the ingest use case, the store and its migrations, the outbox worker, the ASGI app
(`tagger.service.app.create_app`), the team leads' dashboard and reports, agents' feedback, retention and
backfills. It uses the classifier (tagger.classifier) and the helpdesk adapters (tagger.helpdesks)."""
