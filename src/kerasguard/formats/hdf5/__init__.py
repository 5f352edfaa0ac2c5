"""HDF5: the reader (reader) answers from the pure-Python in-process parser (inprocess, with storage and
virtual) or from the h5py child (child, started by child_client); values turns names and attribute values
into the text both share. Kept import-free: the child registers a bare package and imports only child."""
