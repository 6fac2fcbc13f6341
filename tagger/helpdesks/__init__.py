"""Helpdesk adapters: one module per helpdesk, all behind `tagger.helpdesks.base.Adapter`."""
