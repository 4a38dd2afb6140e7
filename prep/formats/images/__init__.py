"""Image format, size and channels read from file headers by magic bytes, without decoding pixels.

Every format this OpenCV build decodes has a reader here, so a decoder is only ever handed an image whose
size was checked first (a few bytes can declare 30000x30000). Each reader follows what OpenCV's own
decoder reads, so the size and channels it gives are the ones `cv2.imdecode(..., IMREAD_UNCHANGED)` returns.

The rest of prep imports from this package only; its modules are:
    dispatch   sniff_format (magic bytes), read_header and check_complete, which pick a format's reader
    base       ImageInfo (what a reader returns), the size limit, and the ISO box walk JP2 and AVIF share
    jpeg       frame header, EXIF orientation, the marker walk to EOI
    png        IHDR, tRNS alpha, the chunk walk to IEND
    gif        logical screen, transparency, the block walk to the trailer
    bmp        DIB header and palette
    webp       VP8 / VP8L / VP8X chunks and the RIFF length
    tiff       first directory of a TIFF or BigTIFF, OpenCV's channel rules
    jpeg2000   SIZ of a j2k codestream or of a JP2 file's
    avif       ispe size and alpha item of the primary image
    netpbm     PNM, PAM and PFM text headers
    hdr        Radiance HDR text header
    ras        Sun raster
"""

from prep.formats.images.base import MAX_SIDE, ImageInfo
from prep.formats.images.dispatch import HEADER_FORMATS, check_complete, is_complete, read_header, sniff_format

__all__ = ["HEADER_FORMATS", "MAX_SIDE", "ImageInfo", "check_complete", "is_complete", "read_header", "sniff_format"]
