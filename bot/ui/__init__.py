"""Discord helpers the cogs share (not cogs): scenes streamed into messages within the rate
limits (render), a scene's text and persistent components (scene), narration audio
(audio), and what every story cog needs — which story, embeds that fit, forms, deadlines
(common). docs/architecture.md, "Module map"."""
