"""python -m nncore: the build's configuration (the demo lands with the dense layers)."""
import nncore

if __name__ == "__main__":
    nncore.show_config()
