"""Fakes of the services Kahani talks to (LLM server, …), as real local servers."""
