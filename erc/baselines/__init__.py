"""The models the dialogue-training framework was written for (DialogueRNN, DialogueGCN) and a context-free MLP."""
