"""Video decoding, optical flow and motion scoring, imported as ``pretextgen.video``."""
