"""Stage 3 model: GraphSmile-style heterogeneous multimodal graph network."""
